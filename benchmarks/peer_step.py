"""One side of benchmarks/peer_official.py in its own process: the official DA trainer's step or ours, timed on
request.

    python benchmarks/peer_step.py official --official-repo UNIT --precision bf16 --threads 2
    python benchmarks/peer_step.py ours --precision off --threads 2

Builds the step with random inputs, runs `--warmup` untimed steps and counts the step's FLOPs, then prints one
JSON line {"ready": true, "flops_per_step": ..., "library": ...}. Every line "step" on stdin then runs one timed
step and prints {"seconds": ...}; end of input ends the process. The official step is what its training loop runs per
iteration, `dis_update` then `gen_update` (svhn2mnist.yaml, gen 96 / dis 64, batch 64), its FLOPs counted by
torch's FlopCounterMode during the first warm-up step; ours is the `digits_official` train step `model.fit`
compiles, its FLOPs counted from the graph (benchmarks/throughput.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from unit_tf.cli import ArgumentParser, positive_int, quiet_tensorflow  # noqa: E402
from unit_tf.config import parse_set_flags  # noqa: E402
from unit_tf.errors import run_cli  # noqa: E402

SIDES = ("official", "ours")
PRESET = "digits_official"
DATASET = "svhn_mnist"
SYNTHETIC_IMAGES = 512  # random images per domain behind our input pipeline


def parse_args(argv: list[str] | None) -> Any:
    parser = ArgumentParser(prog="benchmarks/peer_step.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("side", choices=SIDES)
    parser.add_argument("--official-repo", help="mingyuliutw/UNIT checkout at version_02 (side official)")
    parser.add_argument("--precision", choices=("off", "bf16"), default="off",
                        help="off: float32; bf16: torch.autocast(bfloat16) / train.precision=bfloat16")
    parser.add_argument("--threads", type=positive_int, default=2, help="intra-op threads")
    parser.add_argument("--warmup", type=positive_int, default=2, help="untimed steps before the first timed one")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override: a config key (ours) or an svhn2mnist.yaml hyperparameter (official)")
    args = parser.parse_args(argv)
    if args.side == "official" and not args.official_repo:
        parser.error("side official needs --official-repo")
    return args


def official_step(repo: str, precision: str, threads: int, warmup: int,
                  overrides: dict[str, Any]) -> tuple[Callable[[], None], dict[str, Any]]:
    """The official COCOGANDAContextTrainer's iteration on random inputs, warmed up: (step, {FLOPs per step,
    library})."""
    import torch
    from official_shims import SVHN2MNIST, check_official_repo, load_official_trainers
    from torch.utils.flop_counter import FlopCounterMode

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    trainers = load_official_trainers(check_official_repo(repo))
    hp = {**SVHN2MNIST, **overrides}
    with warnings.catch_warnings():  # its deprecated init.xavier_uniform / init.constant calls
        warnings.simplefilter("ignore", FutureWarning)
        trainer = trainers.COCOGANDAContextTrainer(hp)
    trainer.gpu = 0  # what trainer.cuda(gpu) would set; the tensors stay on the CPU (official_shims)
    n = hp["batch_size"]
    images_a = torch.rand(n, hp["input_dim_a"], 32, 32) * 2 - 1
    images_b = torch.rand(n, hp["input_dim_b"], 32, 32) * 2 - 1
    labels_a = torch.randint(0, 10, (n,))

    def step() -> None:
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
        with autocast:
            trainer.dis_update(images_a, labels_a, images_b, hp)
            trainer.gen_update(images_a, images_b, hp)

    counter = FlopCounterMode(display=False)
    with counter:
        step()
    for _ in range(warmup - 1):
        step()
    return step, {"flops_per_step": int(counter.get_total_flops()), "library": f"torch {torch.__version__}"}


def our_step(precision: str, threads: int, warmup: int,
             overrides: dict[str, Any]) -> tuple[Callable[[], None], dict[str, Any]]:
    """The digits_official train step on random images, warmed up: (step, {FLOPs per step: the model's (convs
    counted as convs) and the executed graph's (benchmarks/throughput.py), the machine's matmul rate in the
    step's precision (throughput.py's MatmulPeak, best of 3 rounds), library})."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    from throughput import MatmulPeak, step_flops, synthetic_train_step

    from unit_tf.config import resolve_config
    from unit_tf.distribute import make_strategy
    from unit_tf.hardware import onednn_on, resolve_precision

    strategy = make_strategy("auto")
    resolved = resolve_precision(precision)
    config = resolve_config(DATASET, PRESET, overrides={**overrides, "train.precision": resolved})
    train_step, dataset = synthetic_train_step(config, strategy, SYNTHETIC_IMAGES)
    batches = iter(dataset)

    def step() -> None:
        train_step(next(batches))["g_loss"].numpy()  # .numpy() waits for the step to finish

    for _ in range(warmup):
        step()
    flops, executed = step_flops(config, strategy, train_step.get_concrete_function(dataset.element_spec))
    peak = MatmulPeak(resolved)
    peak.sample(3)
    return step, {"flops_per_step": flops, "executed_flops_per_step": executed,
                  "peak_matmul_gflops": round(peak.gflops, 1),
                  "library": f"tensorflow {tf.__version__}, oneDNN {'on' if onednn_on() else 'off'}"}


def serve(step: Callable[[], None], info: dict[str, Any], commands: Iterable[str], out: IO[str]) -> None:
    """Say ready (with `info`: FLOPs per step, library), then time one `step` per "step" command until the
    commands end."""
    out.write(json.dumps({"ready": True, **info}) + "\n")
    out.flush()
    for command in commands:
        if command.strip() != "step":
            raise ValueError(f"unknown command {command.strip()!r} (expected 'step')")
        start = time.perf_counter()
        step()
        out.write(json.dumps({"seconds": time.perf_counter() - start}) + "\n")
        out.flush()


def typed(value: str) -> Any:
    """A --set value for the official hyperparameters: a number where it parses as one, else the string."""
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_tensorflow()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    overrides = parse_set_flags(args.set)
    out, sys.stdout = sys.stdout, sys.stderr  # stdout carries the protocol only; stray prints go to stderr
    if args.side == "official":
        step, info = official_step(args.official_repo, args.precision, args.threads, args.warmup,
                                   {key: typed(value) for key, value in overrides.items()})
    else:
        step, info = our_step(args.precision, args.threads, args.warmup, overrides)
    serve(step, info, sys.stdin, out)
    return 0


if __name__ == "__main__":
    run_cli(main, "benchmarks/peer_step.py")
