"""The refactor guard: a few deterministic training steps of each recorded case reproduce tests/golden/steps.json."""

from __future__ import annotations

import json
import sys

import numpy as np
from helpers import ROOT, run_script

# Not imported from golden_steps: importing it would set its one-thread, AVX2-capped TensorFlow settings in
# the test process itself (it configures them at import, for the subprocess that records).
GOLDEN = ROOT / "tests" / "golden" / "steps.json"

# On the CPU model that wrote the record: the losses to a relative 1e-6 (so far reproduced bit for bit) and the
# weights' sha256, or where it differs their per-variable sums. Another CPU model sums float32 in another order
# (oneDNN and Eigen block their loops by the CPU's caches), and Adam turns sign flips of near-zero gradients
# into whole-step weight differences: there the losses of both steps are compared to a relative 1e-3 (a change
# of the maths moves them far more; an AMD EPYC record read on an Intel Xeon: within 1e-4) and the weights only
# through the second step's losses.
RTOL_SAME_CPU = 1e-6
RTOL_OTHER_CPU = 1e-3


def test_training_steps_reproduce_the_golden_record():
    result = run_script(str(ROOT / "tests" / "golden_steps.py"), timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    fresh = json.loads(result.stdout.strip().splitlines()[-1])
    golden = json.loads(GOLDEN.read_text())
    assert sorted(fresh) == sorted(golden)
    for case, want in golden.items():
        got = fresh[case]
        same_cpu = got["machine"] == want["machine"]
        rtol = RTOL_SAME_CPU if same_cpu else RTOL_OTHER_CPU
        assert got["metrics_csv_header"] == want["metrics_csv_header"], case
        assert got.get("source_only") == want.get("source_only"), case
        assert len(got["steps"]) == len(want["steps"]), case
        for step, (g, w) in enumerate(zip(got["steps"], want["steps"], strict=True), 1):
            assert sorted(g) == sorted(w), (case, step)
            for name in w:
                np.testing.assert_allclose(g[name], w[name], rtol=rtol, atol=1e-9, err_msg=f"{case} step {step} {name}")
        assert sorted(got["weights"]["sums"]) == sorted(want["weights"]["sums"]), case
        if same_cpu and got["weights"]["sha256"] != want["weights"]["sha256"]:
            for path, value in want["weights"]["sums"].items():
                np.testing.assert_allclose(got["weights"]["sums"][path], value, rtol=rtol, atol=1e-6,
                                           err_msg=f"{case} {path} (python {sys.version_info[:2]})")
