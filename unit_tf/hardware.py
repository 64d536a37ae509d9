"""What this machine computes natively: CPU flags, GPUs and their compute capability, and the compute
precision a run gets for `--mixed-precision auto|off|bf16|fp16` (`resolve_precision`, used by train.py and
every benchmark).

bfloat16 is native on CPUs with `avx512_bf16` or `amx_bf16` and on GPUs of compute capability >= 8.0;
float16 on CPUs with `avx512_fp16` or `amx_fp16` and on GPUs of compute capability >= 7.0. Elsewhere
TensorFlow emulates them, and a training step can take several times as long as in float32.

TensorFlow's oneDNN kernels: on Linux x86 TensorFlow turns them on by itself only on CPUs with one of
`TF_ONEDNN_CPU_FLAGS`, and elsewhere (e.g. AVX2 without AVX-VNNI) runs its own Eigen kernels, which train
unit-tf's presets far slower there. Importing `unit_tf` sets `TF_ENABLE_ONEDNN_OPTS=1` on such CPUs
(`use_onednn`), unless the variable is set already or TensorFlow is loaded: set `TF_ENABLE_ONEDNN_OPTS=0`
to keep TensorFlow's choice. oneDNN has no bfloat16 kernels without AVX-512, so there `resolve_precision`
stops a bfloat16 run while oneDNN is on: a command restarts itself once with TensorFlow's own kernels
(errors.RestartInEnvironment) where the setting was unit_tf's, else it is one error line.

Environment overrides (tests, and users who know better than the flags): `UNIT_NATIVE_BF16=0|1` and
`UNIT_NATIVE_FP16=0|1` decide whether bfloat16 / float16 count as native, whatever the hardware says;
`UNIT_AVX512=0|1` whether the CPU counts as one with AVX-512 (which fast-path forms run, `avx512`).
"""

from __future__ import annotations

import functools
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

#: CPU flags (/proc/cpuinfo) of native bfloat16 / float16 math.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
FP16_CPU_FLAGS = ("avx512_fp16", "amx_fp16")
#: The lowest GPU compute capability with native bfloat16 (Ampere) and float16 (Volta) math.
BF16_GPU_CAPABILITY = (8, 0)
FP16_GPU_CAPABILITY = (7, 0)
#: CPU flags with which TensorFlow turns on its oneDNN kernels by itself on Linux x86 (DefaultOneDnnPolicy in
#: tensorflow/core/util/util.cc); $TF_ENABLE_ONEDNN_OPTS=0|1 decides instead where it is set.
TF_ONEDNN_CPU_FLAGS = ("avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")
ONEDNN_ENV = "TF_ENABLE_ONEDNN_OPTS"
#: Set beside ONEDNN_ENV by use_onednn (inherited by child processes): the setting is unit_tf's, not the user's.
ONEDNN_AUTO_ENV = "UNIT_ONEDNN_AUTO"

_warned: set[str] = set()


@functools.cache
def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_name() -> str:
    for line in _cpuinfo().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (the first processor's `flags` line of /proc/cpuinfo; empty elsewhere)."""
    for line in _cpuinfo().splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_model_id() -> str:
    """The CPU's name with its family and model numbers (one name covers several generations: "AMD EPYC")."""
    numbers = {}
    for line in _cpuinfo().splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("cpu family", "model") and key.strip() not in numbers:
            numbers[key.strip()] = value.strip()
    if not numbers:
        return cpu_name()
    return f"{cpu_name()} (family {numbers.get('cpu family', '?')}, model {numbers.get('model', '?')})"


def _x86_linux() -> bool:
    return sys.platform.startswith("linux") and platform.machine().lower() in ("x86_64", "amd64")


def tf_onednn_default() -> bool:
    """Whether TensorFlow turns on its oneDNN kernels by itself here: Linux x86 with a flag of
    TF_ONEDNN_CPU_FLAGS. (Elsewhere the default depends on the build; there this module leaves it alone.)"""
    return _x86_linux() and any(flag in cpu_flags() for flag in TF_ONEDNN_CPU_FLAGS)


def use_onednn() -> bool:
    """Turn on TensorFlow's oneDNN kernels on a Linux x86 CPU where TensorFlow would leave them off, by setting
    $TF_ENABLE_ONEDNN_OPTS=1 before TensorFlow loads (it reads the variable once). Not when the variable is
    set (the user's choice) or TensorFlow is loaded already. Returns whether it set it. Why: TensorFlow's own
    (Eigen) kernels train the presets far slower on such CPUs (docs/performance.md, "TensorFlow's oneDNN
    kernels on CPUs without AVX-VNNI")."""
    if ONEDNN_ENV in os.environ or "tensorflow" in sys.modules or not _x86_linux() or tf_onednn_default():
        return False
    os.environ[ONEDNN_ENV] = "1"
    os.environ[ONEDNN_AUTO_ENV] = "1"
    return True


def onednn_on() -> bool:
    """Whether TensorFlow runs its oneDNN kernels in this process ($TF_ENABLE_ONEDNN_OPTS where set, else
    TensorFlow's own default on this CPU; Linux x86 only)."""
    forced = _override(ONEDNN_ENV)
    return _x86_linux() and (forced if forced is not None else tf_onednn_default())


def gpu_details() -> list[dict[str, Any]]:
    """tf.config.experimental.get_device_details of every visible GPU (device_name, compute_capability)."""
    import tensorflow as tf

    return [tf.config.experimental.get_device_details(g) for g in tf.config.list_physical_devices("GPU")]


def gpu_capabilities() -> list[tuple[int, int]]:
    """Every GPU's compute capability ((0, 0) where TensorFlow does not say)."""
    return [tuple(d.get("compute_capability") or (0, 0)) for d in gpu_details()]


def _override(name: str) -> bool | None:
    value = os.environ.get(name, "").strip()
    return None if value == "" else value not in ("0", "false", "no", "off")


def _native(env: str, cpu: tuple[str, ...], capability: tuple[int, int]) -> bool:
    forced = _override(env)
    if forced is not None:
        return forced
    gpus = gpu_capabilities()
    if gpus:
        return all(c >= capability for c in gpus)
    return any(flag in cpu_flags() for flag in cpu)


def native_bf16() -> bool:
    """bfloat16 math in hardware: every GPU of compute capability >= 8.0, or (no GPU) a CPU with
    avx512_bf16 / amx_bf16. $UNIT_NATIVE_BF16=0|1 overrides."""
    return _native("UNIT_NATIVE_BF16", BF16_CPU_FLAGS, BF16_GPU_CAPABILITY)


def native_fp16() -> bool:
    """float16 math in hardware: every GPU of compute capability >= 7.0, or (no GPU) a CPU with
    avx512_fp16 / amx_fp16. $UNIT_NATIVE_FP16=0|1 overrides."""
    return _native("UNIT_NATIVE_FP16", FP16_CPU_FLAGS, FP16_GPU_CAPABILITY)


def avx512() -> bool:
    """Whether the CPU computes with AVX-512 (`avx512f`): some fast paths were measured faster only on CPUs
    without it (unit_tf.fast). $UNIT_AVX512=0|1 overrides (tests: the same forms on every machine)."""
    forced = _override("UNIT_AVX512")
    return forced if forced is not None else "avx512f" in cpu_flags()


def describe() -> str:
    """One line: the GPUs (count, name, compute capability), else the CPU, its cores and "no GPU"."""
    gpus = gpu_details()
    if gpus:
        name = gpus[0].get("device_name", "GPU")
        capability = gpus[0].get("compute_capability")
        cc = f" (compute capability {capability[0]}.{capability[1]})" if capability else ""
        return f"{len(gpus)}x {name}{cc}"
    return f"{cpu_name()}, {len(os.sched_getaffinity(0))} cores, no GPU"


def emulation_cost(precision: str, repeats: int = 3) -> float:
    """How many times as long a small convolution step (forward and filter gradient, the op that suffers most
    from emulation) takes in `precision` as in float32 here: best of `repeats`, after one untimed call."""
    import tensorflow as tf

    def best(dtype: tf.DType) -> float:
        x = tf.cast(tf.random.stateless_uniform((4, 8, 8, 32), (0, 1)), dtype)
        w = tf.Variable(tf.cast(tf.random.stateless_uniform((5, 5, 32, 32), (0, 2), -0.1, 0.1), dtype))

        def step() -> None:
            with tf.GradientTape() as tape:
                y = tf.reduce_sum(tf.nn.conv2d(x, w, 1, "SAME"))
            tape.gradient(y, w).numpy()

        step()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        return min(times)

    return best(tf.as_dtype(precision)) / max(best(tf.float32), 1e-9)


def _warn_emulated(precision: str) -> None:
    """One line on stderr (once per process and precision): `precision` is emulated here, what it costs, how
    to turn it off."""
    if precision in _warned:
        return
    _warned.add(precision)
    capabilities = gpu_capabilities()
    flags = BF16_CPU_FLAGS if precision == "bfloat16" else FP16_CPU_FLAGS
    minimum = BF16_GPU_CAPABILITY if precision == "bfloat16" else FP16_GPU_CAPABILITY
    if capabilities:
        where = f"on this GPU (compute capability {min(capabilities)[0]}.{min(capabilities)[1]} < " \
                f"{minimum[0]}.{minimum[1]})"
    else:
        where = f"on this CPU (no {'/'.join(flags)})"
    ratio = emulation_cost(precision)
    cost = f"{ratio:.1f}x slower" if ratio >= 1 else f"{1 / ratio:.1f}x faster"
    print(f"warning: {precision} is emulated {where}: a small convolution step ran {cost} than float32 here; "
          f"use --mixed-precision off (or auto)", file=sys.stderr, flush=True)


def resolve_precision(choice: str, warn: bool = True) -> str:
    """The compute precision (train.precision: float32, bfloat16 or float16) for `choice`: "auto" is bfloat16
    where native_bf16(), else float32; the --mixed-precision names off/bf16/fp16 are accepted too. An explicit
    bfloat16 / float16 on hardware without native support is kept, with one warning line on stderr (when
    `warn`) that measures what it costs here."""
    from unit_tf.config import MIXED_PRECISION, PRECISIONS

    precision = MIXED_PRECISION.get(choice, choice)
    if precision == "auto":
        return "bfloat16" if native_bf16() else "float32"
    if precision not in PRECISIONS:
        from unit_tf.errors import UserError

        raise UserError(f"precision must be auto, {', '.join(PRECISIONS)} (or off, bf16, fp16), got '{choice}'")
    native = {"bfloat16": native_bf16, "float16": native_fp16}.get(precision)
    if precision == "bfloat16" and not native() and onednn_on() and not avx512() and not gpu_details():
        from unit_tf.errors import RestartInEnvironment, UserError

        message = (f"bfloat16 has no oneDNN kernels on a CPU without AVX-512, and TensorFlow runs oneDNN here "
                   f"({ONEDNN_ENV}=1): use --mixed-precision off (or auto), or set {ONEDNN_ENV}=0 to run bfloat16 "
                   "emulated by TensorFlow's own kernels (slow)")
        if os.environ.get(ONEDNN_AUTO_ENV) == "1":  # unit_tf's choice, not the user's: restart without oneDNN
            raise RestartInEnvironment(message, {ONEDNN_ENV: "0", ONEDNN_AUTO_ENV: None})
        raise UserError(message)
    if warn and native is not None and not native():
        _warn_emulated(precision)
    return precision
