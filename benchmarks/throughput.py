"""Training throughput against the machine's own limit: images/s, FLOPs per step, MFU, input wait.

    python benchmarks/throughput.py --dataset svhn_mnist --preset digits_da --mixed-precision off,bf16

For each precision: the preset's model on synthetic images of the data set's shapes, fed through the real
input pipeline (`unpaired_batches`: in-memory uint8 images, shuffled batches gathered and scaled in tf.data),
trained with the same compiled step `model.fit` runs. Reported:

- `step_ms`: median wall time of the timed steps (after `--warmup` steps, which include tracing);
  `step_ms_min` the fastest of them (what the machine does in a quiet moment), `step_ms_each` all of them in
  order (their spread shows how steady the machine was during the run);
- `images_per_sec`: images per domain per second (global batch / median step time);
- `model_flops_per_step`: float operations per step of the compiled train-step graph (forward, backward and
  optimizer; both updates; only the ops the runtime executes), counted by TensorFlow's profiler from the ops
  and static shapes, with each convolution the Winograd form runs counted as that convolution (its graph
  traced with the form off): the convention of torch's FlopCounterMode, "effective" FLOPs for Winograd;
  `executed_flops_per_step`: the graph as it runs (Winograd's transformed products: 6.25x fewer
  multiplications than the 5x5 convs they compute);
- `achieved_gflops` = model flops / median step time (`executed_gflops` the same for the executed count);
  `peak_matmul_gflops`: a 2048 x 2048 matmul in the same dtype timed in the same process before, between and
  after the timed steps (the best round); `mfu` = achieved / peak (`executed_mfu`);
- `tf_onednn`: whether TensorFlow ran its oneDNN kernels (unit_tf turns them on where TensorFlow would not,
  except for an emulated bfloat16 on CPUs without AVX-512: unit_tf.hardware; every precision is checked
  before the first is timed, so such a command restarts before it measures anything);
- `input_wait_fraction`: time spent waiting for the next batch / total time of the timed steps;
- `peak_rss_gib`: the process's peak resident memory so far (Linux ru_maxrss): what training this preset needs.

Translation presets take an image data set's shapes (RGB), e.g. `--dataset cycle_gan/horse2zebra --preset
translation_256 --images 16` (no data is read: the inputs are synthetic).

Prints ONE JSON line: with one precision its fields; with several, {"runs": [...], "speedup": ...} where
speedup is each run's images/s over the first run's.
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unit_tf.cli import ArgumentParser, positive_int, quiet_tensorflow  # noqa: E402
from unit_tf.config import MIXED_PRECISION  # noqa: E402
from unit_tf.errors import run_cli  # noqa: E402
from unit_tf.hardware import describe, onednn_on, resolve_precision  # noqa: E402

PEAK_MATMUL_SIZE = 2048


def parse_args(argv: list[str] | None) -> Any:
    parser = ArgumentParser(prog="benchmarks/throughput.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="svhn_mnist", help="data set whose shapes the inputs take")
    parser.add_argument("--preset", default="digits_da")
    parser.add_argument("--batch-size", type=positive_int, help="images per domain per step (global)")
    parser.add_argument("--steps", type=positive_int, default=20, help="timed steps")
    parser.add_argument("--warmup", type=positive_int, default=3, help="untimed steps first (tracing)")
    parser.add_argument("--mixed-precision", default="off",
                        help="comma-separated list of auto, off, bf16, fp16; each is measured in turn (auto: bf16 "
                             "where native, else off; an emulated bf16/fp16 gets a warning line)")
    parser.add_argument("--strategy", default="auto", help="auto, one_device or mirrored")
    parser.add_argument("--images", type=positive_int, default=2048, help="synthetic images per domain")
    parser.add_argument("--jit-compile", action="store_true", help="compile the step with XLA")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    args = parser.parse_args(argv)
    args.precisions = [p.strip() for p in args.mixed_precision.split(",") if p.strip()]
    unknown = [p for p in args.precisions if p not in MIXED_PRECISION]
    if unknown or not args.precisions:
        parser.error(f"--mixed-precision takes auto, off, bf16 and fp16 (comma-separated), got "
                     f"{args.mixed_precision!r}")
    return args


def live_ops(concrete_function: Any) -> list[Any]:
    """The ops of the traced function the runtime EXECUTES: those an output, a control output or a stateful op
    (variable updates) depends on. TF prunes the rest before running a function, e.g. the weight gradients of
    the discriminator that the tape builds during the generator update and nothing reads."""
    graph = concrete_function.graph
    stack = [t.op for t in concrete_function.outputs] + list(graph.control_outputs)
    stack += [op for op in graph.get_operations() if op.op_def.is_stateful]
    live: dict[str, Any] = {}
    while stack:
        op = stack.pop()
        if op.name in live:
            continue
        live[op.name] = op
        stack.extend(t.op for t in op.inputs)
        stack.extend(op.control_inputs)
    return list(live.values())


def op_flops(op: Any) -> int:
    """Float operations of one graph op (TF profiler's formula on static shapes; 0 where none is registered)."""
    from tensorflow.python.framework import ops as tf_ops
    from tensorflow.python.profiler.internal import flops_registry  # noqa: F401  (registers the formulas)

    try:
        return int(tf_ops.get_stats_for_node_def(op.graph, op.node_def, "flops").value or 0)
    except ValueError:  # no flops formula registered for this op type (data movement, control flow)
        return 0


def step_flops(config: Any, strategy: Any, concrete_function: Any) -> tuple[int, int]:
    """(model FLOPs, executed FLOPs) per step of `config`'s traced train step `concrete_function`. The model's
    count takes every convolution as the convolution it computes: where the graph runs some by Winograd (ops
    in winograd.SCOPE), the step traced once more (not run) with that form off, each such conv then a conv op
    counted by its direct formula, as torch's FlopCounterMode counts a conv whatever algorithm runs it."""
    from unit_tf.fast import conv_matmul, winograd

    executed = graph_flops(concrete_function)
    if not any(f"{winograd.SCOPE}/" in op.name for op in live_ops(concrete_function)):
        return executed, executed
    limit = conv_matmul.MAX_WINOGRAD_PIXELS
    conv_matmul.MAX_WINOGRAD_PIXELS = 0  # this trace only: no map is small enough for Winograd
    try:
        step, dataset = synthetic_train_step(config, strategy, config.data.batch_size)
        return graph_flops(step.get_concrete_function(dataset.element_spec)), executed
    finally:
        conv_matmul.MAX_WINOGRAD_PIXELS = limit


def graph_flops(concrete_function: Any) -> int:
    """Float operations the traced function executes (`live_ops`; counting the pruned ones would inflate the
    FLOPs and the MFU, by 6 % for digits_official)."""
    return sum(op_flops(op) for op in live_ops(concrete_function))


class MatmulPeak:
    """The machine's matmul rate in `dtype` (the denominator of MFU): the best of many timed rounds.

    Each round is a chain of `repeats` products (x <- x @ w), so no matmul can be merged with another or
    pruned; w's entries have variance 1/size, which keeps x's scale (and bf16/fp16 values) steady. This
    machine's rate drifts by up to 2x within minutes (other tenants), so rounds are sampled before, between
    and after the timed steps and the best one kept: a slow moment during one round cannot inflate the MFU.
    """

    def __init__(self, dtype: str, size: int = PEAK_MATMUL_SIZE, repeats: int = 10) -> None:
        import tensorflow as tf

        x0 = tf.cast(tf.random.normal([size, size]), dtype)
        w = tf.cast(tf.random.normal([size, size], stddev=size**-0.5), dtype)

        @tf.function
        def chain() -> tf.Tensor:
            x = x0
            for _ in range(repeats):
                x = tf.matmul(x, w)
            return tf.reduce_sum(tf.cast(x, tf.float32))

        self._chain = chain
        self._flops = 2.0 * size**3 * repeats
        self._best_s = float("inf")
        chain().numpy()  # trace

    def sample(self, rounds: int = 1) -> None:
        for _ in range(rounds):
            start = time.perf_counter()
            self._chain().numpy()
            self._best_s = min(self._best_s, time.perf_counter() - start)

    @property
    def gflops(self) -> float:
        return self._flops / self._best_s / 1e9


def synthetic_domain(name: str, n: int, size: int, channels: int, seed: int) -> Any:
    import numpy as np

    from unit_tf.data.pipeline import DomainData

    rng = np.random.default_rng(seed)
    return DomainData(name, rng.integers(0, 256, (n, size, size, channels), dtype=np.uint8),
                      rng.integers(0, 10, n))


def synthetic_train_step(config: Any, strategy: Any, images: int, jit_compile: bool = False) -> tuple[Any, Any]:
    """The compiled train step `model.fit` runs for `config`, and a distributed data set of synthetic batches of
    its shapes (`images` random images per domain through the real input pipeline): (step, dataset)."""
    import tensorflow as tf

    from unit_tf.data.pipeline import unpaired_batches
    from unit_tf.distribute import check_batch_size
    from unit_tf.model import build_model

    check_batch_size(config.data.batch_size, strategy)
    m = config.model
    a = synthetic_domain("a", images, m.image_size, m.channels_a, 0)
    b = synthetic_domain("b", images, m.image_size, m.channels_b, 1)
    adapting = m.num_classes > 0
    model = build_model(config, strategy)
    dataset = strategy.experimental_distribute_dataset(
        unpaired_batches(a, b, config.data.batch_size, seed=0, source_labels=adapting))

    @tf.function(jit_compile=jit_compile)
    def step(batch: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        # What model.fit compiles: the train step on every replica, its logs reduced across replicas.
        outputs = strategy.run(model.train_step, args=(batch,))
        return {k: strategy.reduce("MEAN", v, axis=None) for k, v in outputs.items()}

    return step, dataset


def measure(args: Any, precision: str) -> dict[str, Any]:
    from unit_tf.config import parse_set_flags, resolve_config
    from unit_tf.distribute import make_strategy

    resolved = resolve_precision(precision)
    overrides = {**parse_set_flags(args.set), "train.precision": resolved}
    if args.batch_size:
        overrides["data.batch_size"] = args.batch_size
    config = resolve_config(args.dataset, args.preset, overrides=overrides)
    strategy = make_strategy(args.strategy)
    step, dataset = synthetic_train_step(config, strategy, args.images, args.jit_compile)

    peak = MatmulPeak(resolved)
    peak.sample(3)
    iterator = iter(dataset)
    for _ in range(args.warmup):
        step(next(iterator))["g_loss"].numpy()
    # FLOPs of the graph fit runs, and with Winograd's convs counted as convs (single device: the replica's
    # step is the whole step).
    flops, executed = step_flops(config, strategy, step.get_concrete_function(dataset.element_spec))
    waits, totals = [], []
    for _ in range(args.steps):
        start = time.perf_counter()
        batch = next(iterator)
        got = time.perf_counter()
        step(batch)["g_loss"].numpy()  # .numpy() waits for the step to finish
        end = time.perf_counter()
        waits.append(got - start)
        totals.append(end - start)
        peak.sample()  # between steps: outside the timed interval
    peak.sample(3)
    step_s = statistics.median(totals)
    achieved = flops / step_s / 1e9
    return {"preset": args.preset, "dataset": args.dataset, "mixed_precision": precision, "precision": resolved,
            "batch_size": config.data.batch_size, "replicas": strategy.num_replicas_in_sync,
            "step_ms": round(1000 * step_s, 1), "step_ms_min": round(1000 * min(totals), 1),
            "step_ms_each": [round(1000 * t, 1) for t in totals],
            "images_per_sec": round(config.data.batch_size / step_s, 1),
            "model_flops_per_step": flops, "achieved_gflops": round(achieved, 1),
            "peak_matmul_gflops": round(peak.gflops, 1), "mfu": round(achieved / peak.gflops, 3),
            "executed_flops_per_step": executed, "executed_gflops": round(executed / step_s / 1e9, 1),
            "executed_mfu": round(executed / step_s / 1e9 / peak.gflops, 3),
            "tf_onednn": onednn_on(),
            "input_wait_fraction": round(sum(waits) / sum(totals), 4), "timed_steps": args.steps,
            "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_tensorflow()
    import keras

    device = describe()
    for precision in args.precisions:  # every precision's check (a restart without oneDNN) before any timing
        resolve_precision(precision, warn=False)
    runs = []
    for precision in args.precisions:
        runs.append({**measure(args, precision), "device": device})
        keras.mixed_precision.set_global_policy("float32")
    if len(runs) == 1:
        print(json.dumps(runs[0]), flush=True)
    else:
        first = runs[0]["images_per_sec"]
        speedup = {run["mixed_precision"]: round(run["images_per_sec"] / first, 2) for run in runs}
        print(json.dumps({"runs": runs, "speedup": speedup, "device": device}), flush=True)
    return 0


if __name__ == "__main__":
    run_cli(main, "benchmarks/throughput.py")
