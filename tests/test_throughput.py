"""benchmarks/throughput.py: the FLOP count comes from the graph, and the script runs in seconds."""

from __future__ import annotations

import json
import sys

import pytest
import tensorflow as tf
from helpers import ROOT, run_script

sys.path.insert(0, str(ROOT / "benchmarks"))

import throughput  # noqa: E402
from throughput import graph_flops, step_flops, synthetic_train_step  # noqa: E402


def test_graph_flops_counts_a_known_graph():
    @tf.function
    def f(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
        return tf.matmul(a, b)

    concrete = f.get_concrete_function(tf.TensorSpec([64, 128]), tf.TensorSpec([128, 32]))
    assert graph_flops(concrete) == 2 * 64 * 128 * 32


def test_graph_flops_skips_ops_the_runtime_prunes():
    """A product nothing reads is in the traced graph but never runs: it must not count."""
    @tf.function
    def f(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
        tf.matmul(b, a)  # dead: TF prunes it before running the function
        return tf.matmul(a, b)

    concrete = f.get_concrete_function(tf.TensorSpec([64, 128]), tf.TensorSpec([128, 64]))
    assert graph_flops(concrete) == 2 * 64 * 128 * 64


def test_model_flops_count_winograd_convolutions_as_convolutions(monkeypatch):
    """The digit D with 64 channels runs two convs by Winograd: the executed graph counts its fewer products, the
    model's count the convs (each 5x5 conv's products 6.25x the Winograd ones), and the form stays on after. A
    step without Winograd convs is counted once, not traced again."""
    from helpers import tiny_config

    from unit_tf.config import DA_SETTINGS
    from unit_tf.distribute import make_strategy
    from unit_tf.fast import conv_matmul

    strategy = make_strategy("auto")
    for dis_ch, winograd_convs in ((64, True), (4, False)):
        config = tiny_config("svhn_mnist", **{**DA_SETTINGS, "model.dis_ch": dis_ch})
        step, dataset = synthetic_train_step(config, strategy, config.data.batch_size)
        concrete = step.get_concrete_function(dataset.element_spec)
        if not winograd_convs:
            monkeypatch.setattr(throughput, "synthetic_train_step", lambda *args: pytest.fail("traced again"))
        model, executed = step_flops(config, strategy, concrete)
        assert executed == graph_flops(concrete) and conv_matmul.MAX_WINOGRAD_PIXELS == 256
        if winograd_convs:
            # the 16x16 (64 -> 128) conv's forward alone, one pass of 8 images, is 2 * 8 * 256 * 25 * 64 * 128
            assert model - executed > 2 * 8 * 256 * 25 * 64 * 128
        else:
            assert model == executed


def test_throughput_benchmark_prints_one_json_line():
    result = run_script("benchmarks/throughput.py", "--dataset", "mnist_usps", "--preset", "digits_small",
                        "--batch-size", "8", "--steps", "2", "--warmup", "1", "--images", "32",
                        "--mixed-precision", "off,bf16", "--set", "model.gen_ch=4", "--set", "model.dis_ch=4")
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    out = json.loads(lines[0])
    assert [run["mixed_precision"] for run in out["runs"]] == ["off", "bf16"] and out["speedup"]["off"] == 1.0
    assert [run["precision"] for run in out["runs"]] == ["float32", "bfloat16"]
    # conftest simulates a machine without native bf16: one warning line, with the measured cost.
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "bfloat16 is emulated" in warnings[0] and "x " in warnings[0], result.stderr
    for run in out["runs"]:
        assert run["model_flops_per_step"] > 0 and run["images_per_sec"] > 0 and 0 < run["mfu"] < 2
        assert run["executed_flops_per_step"] > 0 and 0 < run["executed_mfu"] < 2
        assert isinstance(run["tf_onednn"], bool)
        assert 0 <= run["input_wait_fraction"] <= 1 and run["peak_matmul_gflops"] > 0
