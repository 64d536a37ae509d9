"""The refactor guard: a few deterministic training steps of each recorded case reproduce tests/golden/steps.json."""

from __future__ import annotations

import json
import sys

import numpy as np
from helpers import ROOT, run_script

# Not imported from golden_steps: importing it would set its one-thread, AVX2-capped TensorFlow settings in
# the test process itself (it configures them at import, for the subprocess that records).
GOLDEN = ROOT / "tests" / "golden" / "steps.json"

# Relative tolerance where a summation order may legitimately change (none has so far: the record is
# reproduced bit for bit); the weights' sha256 is compared first and only its mismatch reads the sums.
RTOL = 1e-6


def test_training_steps_reproduce_the_golden_record():
    result = run_script(str(ROOT / "tests" / "golden_steps.py"), timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    fresh = json.loads(result.stdout.strip().splitlines()[-1])
    golden = json.loads(GOLDEN.read_text())
    assert sorted(fresh) == sorted(golden)
    for case, want in golden.items():
        got = fresh[case]
        assert got["metrics_csv_header"] == want["metrics_csv_header"], case
        assert got.get("source_only") == want.get("source_only"), case
        assert len(got["steps"]) == len(want["steps"]), case
        for step, (g, w) in enumerate(zip(got["steps"], want["steps"], strict=True), 1):
            assert sorted(g) == sorted(w), (case, step)
            for name in w:
                np.testing.assert_allclose(g[name], w[name], rtol=RTOL, atol=1e-9, err_msg=f"{case} step {step} {name}")
        if got["weights"]["sha256"] != want["weights"]["sha256"]:
            assert sorted(got["weights"]["sums"]) == sorted(want["weights"]["sums"]), case
            for path, value in want["weights"]["sums"].items():
                np.testing.assert_allclose(got["weights"]["sums"][path], value, rtol=RTOL, atol=1e-6,
                                           err_msg=f"{case} {path} (python {sys.version_info[:2]})")
