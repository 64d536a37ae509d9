"""benchmarks/translation.py end to end on tiny settings: one JSON line with the ground-truth curve."""

from __future__ import annotations

import json

from helpers import run_script


def test_translation_benchmark_prints_one_json_line(tmp_path):
    result = run_script("benchmarks/translation.py", "--minutes", "0.05", "--images", "16", "--test-images", "4",
                        "--eval-every", "2", "--image-size", "16", "--output-dir", str(tmp_path / "run"),
                        "--set", "model.gen_ch=4", "--set", "model.dis_ch=4", "--set", "model.dis_layers=2",
                        "--set", "data.batch_size=2")
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    out = json.loads(lines[0])
    assert out["preset"] == "small" and out["steps"] >= 1 and out["curve"][-1]["step"] == out["steps"]
    for key in ("gt_l1_a2b", "gt_l1_b2a", "recon_l1", "cycle_l1"):
        assert 0.0 <= out[key] <= 1.0
    # Not translating at all is far from the right answer (colour inversion of bright-on-dark shapes).
    assert out["identity_gt_l1_a2b"] > 0.5 and out["identity_gt_l1_b2a"] > 0.5
