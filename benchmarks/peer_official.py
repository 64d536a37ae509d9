"""Our digits_official step against the official PyTorch DA trainer on this machine, alternating in pairs.

    pip install torch   # this benchmark's optional dependency, not unit-tf's
    git clone https://github.com/mingyuliutw/UNIT && git -C UNIT checkout version_02
    python benchmarks/peer_official.py --official-repo UNIT --precision off,bf16 --pairs 3

For each precision, two processes (benchmarks/peer_step.py) build and warm up one side each, with `--threads`
intra-op threads: the official `COCOGANDAContextTrainer` iteration (`dis_update` + `gen_update`,
svhn2mnist.yaml: gen 96, dis 64, batch 64; bf16 = torch.autocast) from the user's checkout, run through run-time
shims and never copied (benchmarks/official_shims.py), and our `digits_official` train step (bf16 =
train.precision=bfloat16). Both on random inputs. Then `--pairs` pairs of one timed step each, alternately: the
side that goes first alternates from pair to pair, and the other process waits idle while one runs.

Prints ONE JSON line: per precision the step times of every pair and their ratio official / ours,
`ratio_official_over_ours` (the median of the pair ratios), `ratio_official_fastest_over_ours_median` (the
official code at its best minute against our median), per side the median and fastest step, the FLOPs per step
(official: torch's FlopCounterMode, which counts matmuls and convolutions, forward and backward, each
convolution by its direct formula whatever algorithm oneDNN picks; ours: the train-step graph as
benchmarks/throughput.py counts it, every op with a FLOP formula, Winograd's convs as the convs they are), the
achieved GFLOP/s, ours also by the executed graph (`executed_flops_per_step`, `executed_gflops`,
`executed_mfu`: the fast paths' forms, e.g. Winograd's fewer products), and both sides' MFU against the
machine's matmul rate in that precision (`peak_matmul_gflops`: TF's 2048 x 2048 matmul chain, best of 3 rounds
in our side's process before the pairs; convolutions counted with their padding can pass it); and the CPU:
model, SIMD flags, whether bfloat16 is native. Each precision's result also goes to stderr as soon
as it is measured.

`--isa avx2` caps both sides at AVX2 + FMA on a CPU with AVX-512 (`ISA_CAPS`: oneDNN, torch's kernels, MKL,
our forms for CPUs without AVX-512): what the code does on an AVX2 machine, at this CPU's caches, memory and
clock, which an AVX2 machine may not have. The JSON says `"isa"`, and our side's library whether TensorFlow
ran its oneDNN kernels (which unit_tf turns on where TensorFlow would not: unit_tf.hardware.use_onednn; with
TF_ENABLE_ONEDNN_OPTS=0 in the environment it runs TensorFlow's own kernels, as before that).
"""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from official_shims import check_official_repo  # noqa: E402

from unit_tf.cli import ArgumentParser, positive_int, quiet_tensorflow  # noqa: E402
from unit_tf.errors import UserError, run_cli  # noqa: E402

PRECISIONS = ("off", "bf16")
STEP_SCRIPT = Path(__file__).resolve().parent / "peer_step.py"
#: CPU flag prefixes that decide how fast the math runs (vector width, FMA, bf16/fp16/AMX support).
SIMD_FLAG_PREFIXES = ("sse", "ssse", "avx", "fma", "f16c", "amx")
#: `--isa avx2`: the environment that caps both sides at AVX2 + FMA on a CPU that has more (an emulation: the
#: CPU's caches, memory and clock stay its own). oneDNN in TF and in torch, torch's own kernels, MKL, and our
#: fast-path forms and precision choice for CPUs without AVX-512 / native bfloat16.
ISA_CAPS = {"avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "DNNL_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2",
                     "MKL_ENABLE_INSTRUCTIONS": "AVX2", "UNIT_AVX512": "0", "UNIT_NATIVE_BF16": "0"}}


def cap_isa(isa: str) -> None:
    """Set `ISA_CAPS[isa]` in this process's environment (before any TF or torch math runs; child processes
    inherit it); "native" changes nothing."""
    os.environ.update(ISA_CAPS.get(isa, {}))


def parse_args(argv: list[str] | None) -> Any:
    parser = ArgumentParser(prog="benchmarks/peer_official.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--official-repo", required=True, help="mingyuliutw/UNIT checkout at version_02")
    parser.add_argument("--precision", default="off",
                        help="comma-separated list of off (float32) and bf16; each is measured in turn")
    parser.add_argument("--pairs", type=positive_int, default=3, help="timed pairs (one step per side) per precision")
    parser.add_argument("--threads", type=positive_int, default=2, help="intra-op threads of each side")
    parser.add_argument("--warmup", type=positive_int, default=2, help="untimed steps per side first")
    parser.add_argument("--isa", choices=("native", *ISA_CAPS), default="native",
                        help="avx2: cap both sides at AVX2 (emulates a CPU without AVX-512 on one that has it)")
    args = parser.parse_args(argv)
    args.precisions = [p.strip() for p in args.precision.split(",") if p.strip()]
    if not args.precisions or any(p not in PRECISIONS for p in args.precisions):
        parser.error(f"--precision takes off and bf16 (comma-separated), got {args.precision!r}")
    return args


class Side:
    """One side's benchmarks/peer_step.py process: started and warmed up on creation, one timed step per call."""

    def __init__(self, name: str, options: list[str], threads: int) -> None:
        self.name = name
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), TF_CPP_MIN_LOG_LEVEL="2")
        self._process = subprocess.Popen([sys.executable, str(STEP_SCRIPT), name, "--threads", str(threads),
                                          *options], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                         env=env)
        self.info = self._reply("ready")

    def _reply(self, key: str) -> dict[str, Any]:
        for line in self._process.stdout:
            if line.startswith("{"):
                reply = json.loads(line)
                if key in reply:
                    return reply
        code = self._process.wait()
        how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code} (its error is above)"
        raise UserError(f"the {self.name} side's process (benchmarks/peer_step.py) {how} before answering; "
                        f"run again")

    def step(self) -> float:
        self._process.stdin.write("step\n")
        self._process.stdin.flush()
        return float(self._reply("seconds")["seconds"])

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.stdin.close()
            self._process.wait()


def run_pairs(official: Any, ours: Any, pairs: int) -> list[dict[str, Any]]:
    """`pairs` pairs of one timed step per side; the side that goes first alternates (official in pair 0)."""
    results = []
    for i in range(pairs):
        order = (official, ours) if i % 2 == 0 else (ours, official)
        seconds = {side.name: side.step() for side in order}
        results.append({"official_s": round(seconds["official"], 3), "ours_s": round(seconds["ours"], 3),
                        "ratio": round(seconds["official"] / seconds["ours"], 3), "first": order[0].name})
    return results


def side_summary(seconds: list[float], info: dict[str, Any], peak_gflops: float | None = None) -> dict[str, Any]:
    """Median and fastest step, FLOPs per step and achieved GFLOP/s (FLOPs / median step) of one side (ours also
    by its executed graph), and its MFU against the machine's matmul rate `peak_gflops` where measured."""
    median = statistics.median(seconds)
    achieved = info["flops_per_step"] / median / 1e9
    summary = {"step_s_median": round(median, 3), "step_s_fastest": round(min(seconds), 3),
               "flops_per_step": int(info["flops_per_step"]), "achieved_gflops": round(achieved, 1)}
    if peak_gflops:
        summary["mfu"] = round(achieved / peak_gflops, 3)
    if "executed_flops_per_step" in info:  # ours: the graph that runs, where it differs from the model's count
        executed = info["executed_flops_per_step"] / median / 1e9
        summary.update({"executed_flops_per_step": int(info["executed_flops_per_step"]),
                        "executed_gflops": round(executed, 1)})
        if peak_gflops:
            summary["executed_mfu"] = round(executed / peak_gflops, 3)
    return {**summary, "library": info.get("library")}


def summarize(precision: str, pairs: list[dict[str, Any]], official_info: dict[str, Any],
              ours_info: dict[str, Any]) -> dict[str, Any]:
    """One precision's result: the pairs, the median of their ratios (official / ours), the official side's
    fastest step over our median one (the official code at its best minute: its step time drifts the most),
    and each side; with the machine's matmul rate in this precision (measured by our side's process, TF's
    kernels), each side's MFU against it."""
    official_fastest = min(p["official_s"] for p in pairs)
    ours_median = statistics.median(p["ours_s"] for p in pairs)
    peak = ours_info.get("peak_matmul_gflops")
    return {"precision": precision, "pairs": pairs,
            "ratio_official_over_ours": round(statistics.median(p["ratio"] for p in pairs), 3),
            "ratio_official_fastest_over_ours_median": round(official_fastest / ours_median, 3),
            **({"peak_matmul_gflops": peak} if peak else {}),
            "official": side_summary([p["official_s"] for p in pairs], official_info, peak),
            "ours": side_summary([p["ours_s"] for p in pairs], ours_info, peak)}


def cpu_summary() -> dict[str, Any]:
    """The CPU model, its SIMD / matrix flags and whether bfloat16 is native here (unit_tf.hardware)."""
    from unit_tf.hardware import cpu_flags, cpu_name, describe, native_bf16

    flags = sorted(f for f in cpu_flags() if f.startswith(SIMD_FLAG_PREFIXES))
    return {"device": describe(), "cpu_model": cpu_name(), "cpu_flags": flags, "native_bf16": native_bf16()}


def checkout_commit(repo: Path) -> str | None:
    """The checkout's commit where it is the top of a git work tree, else None (e.g. an unpacked archive)."""
    try:
        top = subprocess.run(["git", "-C", str(repo), "rev-parse", "--show-toplevel", "HEAD"], capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = top.stdout.split()
    if top.returncode != 0 or len(lines) != 2 or Path(lines[0]).resolve() != repo.resolve():
        return None
    return lines[1]


def measure(repo: Path, precision: str, args: Any) -> dict[str, Any]:
    common = ["--precision", precision, "--warmup", str(args.warmup)]
    sides = []
    try:
        sides.append(Side("official", [*common, "--official-repo", str(repo)], args.threads))
        sides.append(Side("ours", common, args.threads))
        pairs = run_pairs(*sides, args.pairs)
    finally:
        for side in sides:
            side.close()
    return summarize(precision, pairs, sides[0].info, sides[1].info)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    repo = check_official_repo(args.official_repo)
    if importlib.util.find_spec("torch") is None:
        raise UserError("torch is not installed: the official side needs it (pip install torch; it is this "
                        "benchmark's optional dependency, not unit-tf's)")
    quiet_tensorflow()
    cap_isa(args.isa)
    runs = []
    for precision in args.precisions:
        runs.append(measure(repo, precision, args))
        print(f"peer_official: {precision} done: {json.dumps(runs[-1])}", file=sys.stderr, flush=True)
    print(json.dumps({"runs": runs, "threads": args.threads, "official_commit": checkout_commit(repo),
                      "isa": args.isa, **cpu_summary()}), flush=True)
    return 0


if __name__ == "__main__":
    run_cli(main, "benchmarks/peer_official.py")
