"""Our train step's convolutions and matmuls, op by op, against the same shapes in PyTorch (oneDNN).

    python benchmarks/peer_ops.py                        # digits_official, float32, 2 threads
    python benchmarks/peer_ops.py --precision bf16       # the bfloat16 step's ops (torch: bfloat16 tensors)
    python benchmarks/peer_ops.py --preset digits_da_small --dataset mnist_usps --top 10

Lists every convolution and matmul the compiled train step executes (benchmarks/throughput.py's live ops),
grouped by type, shapes and attributes, with how often it runs per step and its FLOPs. Times each group's op
alone, the best of `--repeats` runs: in TensorFlow (this process, the raw op) and, where torch is installed, the
same computation in a child process with torch: NCHW tensors as the official code runs them
(F.conv2d, torch.nn.grad.conv2d_input / conv2d_weight, matmul) and again channels_last. This is where a
step's kernels lose against PyTorch's: the ops time alone, a step also overlaps them and runs everything else.

Prints ONE JSON line: per group (slowest against torch's best first, `--top` of them) the op type, shapes,
attributes, count, GFLOP per step, TF and torch milliseconds per step; totals over all groups with the
achieved GFLOP/s of each; and the CPU (model, SIMD flags).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from peer_official import ISA_CAPS, cap_isa, cpu_summary  # noqa: E402

from unit_tf.cli import ArgumentParser, positive_int, quiet_tensorflow  # noqa: E402
from unit_tf.errors import run_cli  # noqa: E402

CONVOLUTIONS = ("Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter")
MATMULS = ("MatMul", "BatchMatMulV2")
ATTRIBUTES = ("strides", "padding", "dilations", "transpose_a", "transpose_b", "adj_x", "adj_y")


def parse_args(argv: list[str] | None) -> Any:
    parser = ArgumentParser(prog="benchmarks/peer_ops.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="svhn_mnist", help="data set whose shapes the inputs take")
    parser.add_argument("--preset", default="digits_official")
    parser.add_argument("--precision", choices=("off", "bf16"), default="off",
                        help="off: float32; bf16: the ops of the bfloat16 step, in bfloat16 on both sides")
    parser.add_argument("--threads", type=positive_int, default=2, help="intra-op threads on both sides")
    parser.add_argument("--repeats", type=positive_int, default=3, help="timed runs per op (the best is kept)")
    parser.add_argument("--top", type=positive_int, default=25, help="groups listed (all count in the totals)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--isa", choices=("native", *ISA_CAPS), default="native",
                        help="avx2: cap both sides at AVX2 (benchmarks/peer_official.py's ISA_CAPS)")
    # internal: the child process that times the ops in torch (the op list as JSON on stdin)
    parser.add_argument("--torch-side", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def step_ops(dataset: str, preset: str, precision: str, overrides: dict[str, Any]) -> list[dict[str, Any]]:
    """The convolutions and matmuls of the compiled train step in `precision` (float32 | bfloat16), grouped:
    type, dtype, input and output shapes, attributes, count per step, FLOPs of one."""
    from throughput import live_ops, op_flops, synthetic_train_step

    from unit_tf.config import resolve_config
    from unit_tf.distribute import make_strategy

    config = resolve_config(dataset, preset, overrides={**overrides, "train.precision": precision})
    step, data = synthetic_train_step(config, make_strategy("auto"), 4 * config.data.batch_size)
    groups: dict[str, dict[str, Any]] = {}
    for op in live_ops(step.get_concrete_function(data.element_spec)):
        if op.type not in CONVOLUTIONS + MATMULS:
            continue
        attributes = {}
        for name in ATTRIBUTES:
            if name in op.node_def.attr:
                value = op.get_attr(name)
                attributes[name] = value.decode() if isinstance(value, bytes) else value
        shapes = [t.shape.as_list() for t in op.inputs]
        if op.type == "Conv2DBackpropInput":
            shapes[0] = None  # input_sizes: the output's shape
        elif op.type == "Conv2DBackpropFilter":
            shapes[1] = None  # filter_sizes: the output's shape
        group = {"type": op.type, "dtype": op.outputs[0].dtype.name, "inputs": shapes,
                 "output": op.outputs[0].shape.as_list(), **attributes}
        key = json.dumps(group)
        groups.setdefault(key, {**group, "count": 0, "flops": op_flops(op), "example": op.name})
        groups[key]["count"] += 1
    return list(groups.values())


def best_time(run: Callable[[], Any], finish: Callable[[Any], Any], repeats: int) -> float:
    """The fastest of `repeats` timed runs (after one untimed run), in seconds."""
    finish(run())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        finish(run())
        times.append(time.perf_counter() - start)
    return min(times)


def time_tf(op: dict[str, Any], repeats: int) -> float:
    """One group's op alone in TensorFlow: the raw op on random inputs in a tf.function."""
    import tensorflow as tf

    shapes = op["inputs"]
    tensors = [None if s is None else tf.random.normal(s, dtype=op["dtype"]) for s in shapes]
    conv = {k: op[k] for k in ("strides", "padding", "dilations") if k in op}
    if op["type"] == "Conv2D":
        def run() -> Any:
            return tf.raw_ops.Conv2D(input=tensors[0], filter=tensors[1], **conv)
    elif op["type"] == "Conv2DBackpropInput":
        def run() -> Any:
            return tf.raw_ops.Conv2DBackpropInput(input_sizes=op["output"], filter=tensors[1],
                                                  out_backprop=tensors[2], **conv)
    elif op["type"] == "Conv2DBackpropFilter":
        def run() -> Any:
            return tf.raw_ops.Conv2DBackpropFilter(input=tensors[0], filter_sizes=op["output"],
                                                   out_backprop=tensors[2], **conv)
    elif op["type"] == "MatMul":
        def run() -> Any:
            return tf.linalg.matmul(tensors[0], tensors[1], transpose_a=op["transpose_a"],
                                    transpose_b=op["transpose_b"])
    else:
        def run() -> Any:
            return tf.linalg.matmul(tensors[0], tensors[1], adjoint_a=op["adj_x"], adjoint_b=op["adj_y"])
    compiled = tf.function(run)
    return best_time(compiled, lambda y: y.numpy(), repeats)


def torch_padding(op: dict[str, Any]) -> int:
    """torch's symmetric padding for the op's 'SAME' / 'VALID' (every 'SAME' here pads symmetrically)."""
    if op["padding"] == "VALID":
        return 0
    kernel = (op["inputs"][1] or op["output"])[0]
    return (kernel - op["strides"][1]) // 2 if op["strides"][1] > 1 else (kernel - 1) // 2


def time_torch(op: dict[str, Any], repeats: int, channels_last: bool) -> float:
    """The same computation in torch (NCHW activations, OIHW kernels; channels_last if asked)."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    def nchw(s: list[int]) -> list[int]:
        return [s[0], s[3], s[1], s[2]]

    def oihw(s: list[int]) -> list[int]:
        return [s[3], s[2], s[0], s[1]]

    dtype = getattr(torch, op["dtype"])

    def tensor(shape: list[int]) -> Any:
        t = torch.randn(shape, dtype=dtype)
        return t.contiguous(memory_format=torch.channels_last) if channels_last and t.dim() == 4 else t

    kind, shapes = op["type"], op["inputs"]
    if kind in CONVOLUTIONS:
        stride, padding = op["strides"][1], torch_padding(op)
    if kind == "Conv2D":
        x, w = tensor(nchw(shapes[0])), tensor(oihw(shapes[1]))
        def run() -> Any:
            return F.conv2d(x, w, stride=stride, padding=padding)
    elif kind == "Conv2DBackpropInput":
        w, dy = tensor(oihw(shapes[1])), tensor(nchw(shapes[2]))
        def run() -> Any:
            return torch.nn.grad.conv2d_input(nchw(op["output"]), w, dy, stride=stride, padding=padding)
    elif kind == "Conv2DBackpropFilter":
        x, dy = tensor(nchw(shapes[0])), tensor(nchw(shapes[2]))
        def run() -> Any:
            return torch.nn.grad.conv2d_weight(x, oihw(op["output"]), dy, stride=stride, padding=padding)
    else:
        a, b = torch.randn(shapes[0], dtype=dtype), torch.randn(shapes[1], dtype=dtype)
        ta, tb = (op["transpose_a"], op["transpose_b"]) if kind == "MatMul" else (op["adj_x"], op["adj_y"])
        def run() -> Any:
            return torch.matmul(a.mT if ta else a, b.mT if tb else b)
    with torch.no_grad():
        return best_time(run, lambda y: y, repeats)


def torch_side(repeats: int, threads: int) -> int:
    """The child process: ops (JSON) on stdin, each one's torch times (NCHW, channels_last) as JSON on stdout."""
    import torch

    torch.set_num_threads(threads)
    ops = json.loads(sys.stdin.read())
    times = [[time_torch(op, repeats, False), time_torch(op, repeats, True)] for op in ops]
    print(json.dumps({"library": f"torch {torch.__version__}", "times": times}), flush=True)
    return 0


def torch_times(ops: list[dict[str, Any]], repeats: int, threads: int) -> dict[str, Any] | None:
    """Every op timed in torch in a child process, or None where torch is not installed."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return None
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    done = subprocess.run([sys.executable, __file__, "--torch-side", "--repeats", str(repeats), "--threads",
                           str(threads)], input=json.dumps(ops), capture_output=True, text=True, env=env)
    if done.returncode != 0:
        print(done.stderr[-2000:], file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(ops: list[dict[str, Any]], tf_seconds: list[float], torch: dict[str, Any] | None,
           top: int) -> dict[str, Any]:
    """Per-group rows (milliseconds per step: one op's time x its count) and totals."""
    rows = []
    for i, op in enumerate(ops):
        per_step = op["count"]
        row = {k: v for k, v in op.items() if k not in ("flops", "dilations")}
        row["gflop_per_step"] = round(op["flops"] * per_step / 1e9, 2)
        row["tf_ms"] = round(1e3 * tf_seconds[i] * per_step, 1)
        if torch is not None:
            nchw, channels_last = torch["times"][i]
            row["torch_ms"] = round(1e3 * nchw * per_step, 1)
            row["torch_channels_last_ms"] = round(1e3 * channels_last * per_step, 1)
        rows.append(row)
    flops = sum(op["flops"] * op["count"] for op in ops)

    def total(key: str) -> dict[str, float]:
        seconds = sum(r[key] for r in rows) / 1e3
        return {"seconds": round(seconds, 3), "gflops": round(flops / seconds / 1e9, 1)}

    totals = {"gflop_per_step": round(flops / 1e9, 1), "tf": total("tf_ms")}
    if torch is not None:
        for r in rows:
            r["torch_best_ms"] = min(r["torch_ms"], r["torch_channels_last_ms"])
        totals.update(torch=total("torch_ms"), torch_channels_last=total("torch_channels_last_ms"),
                      torch_best=total("torch_best_ms"))
        totals["tf_over_torch_best"] = round(totals["tf"]["seconds"] / totals["torch_best"]["seconds"], 3)
        rows.sort(key=lambda r: r["torch_best_ms"] - r["tf_ms"])
    else:
        rows.sort(key=lambda r: -r["tf_ms"])
    return {"ops": rows[:top], "groups": len(rows), "totals": totals,
            "torch_library": None if torch is None else torch["library"]}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.torch_side:
        return torch_side(args.repeats, args.threads)
    quiet_tensorflow()
    cap_isa(args.isa)  # before TF's first op: oneDNN reads its cap then
    import tensorflow as tf

    from unit_tf.config import parse_set_flags
    from unit_tf.hardware import onednn_on, resolve_precision

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    ops = step_ops(args.dataset, args.preset, resolve_precision(args.precision), parse_set_flags(args.set))
    tf_seconds = [time_tf(op, args.repeats) for op in ops]
    result = report(ops, tf_seconds, torch_times(ops, args.repeats, args.threads), args.top)
    print(json.dumps({"preset": args.preset, "dataset": args.dataset, "precision": args.precision,
                      "isa": args.isa, "threads": args.threads, "tensorflow": tf.__version__,
                      "tf_onednn": onednn_on(), **result,
                      **cpu_summary()}), flush=True)
    return 0


if __name__ == "__main__":
    run_cli(main, "benchmarks/peer_ops.py")
