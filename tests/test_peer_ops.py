"""benchmarks/peer_ops.py: the op list adds up to the step's FLOPs, every listed op runs alone in TF with the
shapes it has in the step (the CLI times them all), and the JSON line (torch's side where torch is installed)
adds up."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest
from helpers import ROOT, run_script

sys.path.insert(0, str(ROOT / "benchmarks"))

from peer_ops import CONVOLUTIONS, MATMULS, report, step_ops, torch_padding  # noqa: E402

HAS_TORCH = importlib.util.find_spec("torch") is not None
TINY = {"model.gen_ch": 4, "model.dis_ch": 4, "data.batch_size": 4}


def test_step_ops_group_the_steps_convolutions_and_matmuls():
    from throughput import graph_flops, synthetic_train_step

    from unit_tf.config import resolve_config
    from unit_tf.distribute import make_strategy

    ops = step_ops("mnist_usps", "digits_small", "float32", TINY)
    assert {op["type"] for op in ops} <= set(CONVOLUTIONS + MATMULS)
    assert {op["dtype"] for op in ops} == {"float32"}
    assert {"Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter", "MatMul"} <= {op["type"] for op in ops}
    assert len({json.dumps({k: v for k, v in op.items() if k not in ("count", "flops", "example")})
                for op in ops}) == len(ops)  # one group per distinct op
    config = resolve_config("mnist_usps", "digits_small", overrides={**TINY, "train.precision": "float32"})
    step, data = synthetic_train_step(config, make_strategy("auto"), 16)
    total = graph_flops(step.get_concrete_function(data.element_spec))
    listed = sum(op["flops"] * op["count"] for op in ops)
    assert 0.95 * total <= listed <= total  # convolutions and matmuls are nearly all of a step's arithmetic
    # (each op running alone with the step's shapes: test_peer_ops_prints_one_json_line times them all)


def test_step_ops_of_the_bfloat16_step_are_bfloat16():
    ops = step_ops("mnist_usps", "digits_small", "bfloat16", TINY)
    assert {"Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter"} <= {op["type"] for op in ops}
    assert {op["dtype"] for op in ops if op["type"] in CONVOLUTIONS} == {"bfloat16"}


@pytest.mark.parametrize("op, padding", [
    ({"padding": "SAME", "strides": [1, 1, 1, 1], "inputs": [[1, 8, 8, 3], [5, 5, 3, 4]]}, 2),
    ({"padding": "SAME", "strides": [1, 2, 2, 1], "inputs": [[1, 8, 8, 3], [4, 4, 3, 4]]}, 1),
    ({"padding": "SAME", "strides": [1, 1, 1, 1], "inputs": [[1, 8, 8, 3], None], "output": [3, 3, 3, 4]}, 1),
    ({"padding": "VALID", "strides": [1, 2, 2, 1], "inputs": [[1, 8, 8, 3], [5, 5, 3, 4]]}, 0),
])
def test_torch_padding_matches_same_and_valid(op, padding):
    assert torch_padding(op) == padding


def test_report_totals_and_orders_by_what_tf_loses():
    ops = [{"type": "MatMul", "inputs": [[2, 3], [3, 4]], "output": [2, 4], "count": 2, "flops": 10**9,
            "example": "a"},
           {"type": "Conv2D", "inputs": [[1, 4, 4, 3], [3, 3, 3, 4]], "output": [1, 4, 4, 4], "count": 1,
            "flops": 2 * 10**9, "example": "b"}]
    out = report(ops, [0.010, 0.050], {"library": "torch x", "times": [[0.010, 0.020], [0.020, 0.010]]}, top=5)
    assert [r["example"] for r in out["ops"]] == ["b", "a"]  # b: 50 ms in TF vs 10 in torch's best
    assert out["totals"]["tf"] == {"seconds": 0.07, "gflops": 57.1}
    assert out["totals"]["torch_best"]["seconds"] == 0.03 and out["totals"]["tf_over_torch_best"] == 2.333
    assert report(ops, [0.010, 0.050], None, top=1)["ops"][0]["example"] == "b"  # no torch: slowest first


def test_peer_ops_prints_one_json_line():
    result = run_script("benchmarks/peer_ops.py", "--dataset", "mnist_usps", "--preset", "digits_small",
                        "--repeats", "1", "--top", "3", *[f"--set={k}={v}" for k, v in TINY.items()])
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    out = json.loads(lines[0])
    assert len(out["ops"]) == 3 and out["groups"] >= 3 and out["totals"]["tf"]["gflops"] > 0
    assert out["cpu_model"] and "threads" in out
    assert (out["torch_library"] is not None) == HAS_TORCH
