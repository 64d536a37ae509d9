"""unit_tf.hardware: which precision `auto` picks, the GPU capability rule, the one warning for emulation."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from unit_tf import hardware
from unit_tf.errors import RestartInEnvironment, UserError


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    monkeypatch.setattr(hardware, "_warned", set())


def test_conftest_pins_a_machine_without_native_bf16():
    assert not hardware.native_bf16() and hardware.resolve_precision("auto") == "float32"


@pytest.mark.parametrize(("env", "expected"), [("0", "float32"), ("1", "bfloat16")])
def test_auto_follows_the_override(monkeypatch, capsys, env, expected):
    monkeypatch.setenv("UNIT_NATIVE_BF16", env)
    assert hardware.resolve_precision("auto") == expected
    assert hardware.resolve_precision("off") == "float32"
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(("capability", "bf16", "fp16"), [((7, 5), False, True), ((8, 0), True, True),
                                                          ((6, 1), False, False), ((9, 0), True, True)])
def test_gpu_compute_capability_rule(monkeypatch, capability, bf16, fp16):
    monkeypatch.delenv("UNIT_NATIVE_BF16")
    monkeypatch.delenv("UNIT_NATIVE_FP16")
    monkeypatch.setattr(hardware, "gpu_details",
                        lambda: [{"device_name": "GPU X", "compute_capability": capability}])
    assert hardware.native_bf16() is bf16 and hardware.native_fp16() is fp16
    assert hardware.resolve_precision("auto", warn=False) == ("bfloat16" if bf16 else "float32")
    assert "GPU X" in hardware.describe()
    # Every GPU must have it.
    monkeypatch.setattr(hardware, "gpu_details", lambda: [{"compute_capability": (9, 0)},
                                                          {"compute_capability": capability}])
    assert hardware.native_bf16() is bf16


def test_cpu_flags_rule(monkeypatch):
    monkeypatch.delenv("UNIT_NATIVE_BF16")
    monkeypatch.setattr(hardware, "gpu_details", lambda: [])
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    assert not hardware.native_bf16()
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"avx2", "amx_bf16"}))
    assert hardware.native_bf16()
    assert "no GPU" in hardware.describe()


def test_explicit_bf16_without_native_support_warns_once_with_the_measured_cost(monkeypatch, capsys):
    assert hardware.resolve_precision("bf16") == "bfloat16"
    assert hardware.resolve_precision("bfloat16") == "bfloat16"
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: bfloat16 is emulated on this CPU"), lines
    assert re.search(r"\d+\.\d+x (slower|faster) than float32", lines[0]) and "--mixed-precision off" in lines[0]
    monkeypatch.setenv("UNIT_NATIVE_BF16", "1")
    monkeypatch.setattr(hardware, "_warned", set())
    assert hardware.resolve_precision("bf16") == "bfloat16" and capsys.readouterr().err == ""


def test_unknown_precision():
    with pytest.raises(UserError, match="precision"):
        hardware.resolve_precision("int8")


@pytest.fixture
def avx2_linux(monkeypatch):
    """A Linux x86 CPU without the flags that make TensorFlow turn oneDNN on, TensorFlow not loaded yet."""
    for name in (hardware.ONEDNN_ENV, hardware.ONEDNN_AUTO_ENV):  # set first, so that monkeypatch restores both
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.delitem(sys.modules, "tensorflow")
    monkeypatch.setattr(hardware, "_x86_linux", lambda: True)
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"avx", "avx2", "fma"}))


def test_onednn_is_turned_on_where_tensorflow_leaves_it_off(avx2_linux):
    assert not hardware.tf_onednn_default() and not hardware.onednn_on()
    assert hardware.use_onednn() and os.environ[hardware.ONEDNN_ENV] == "1" and hardware.onednn_on()
    assert os.environ[hardware.ONEDNN_AUTO_ENV] == "1"  # unit_tf's setting, not the user's
    assert not hardware.use_onednn()  # set once


@pytest.mark.parametrize("case", ["vnni_cpu", "user_set", "tensorflow_loaded", "not_x86"])
def test_onednn_is_left_alone(avx2_linux, monkeypatch, case):
    if case == "vnni_cpu":  # TensorFlow turns it on by itself
        monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"avx2", "avx512f", "avx512_vnni"}))
    elif case == "user_set":
        monkeypatch.setenv(hardware.ONEDNN_ENV, "0")
    elif case == "tensorflow_loaded":  # it read the variable already
        monkeypatch.setitem(sys.modules, "tensorflow", object())
    else:
        monkeypatch.setattr(hardware, "_x86_linux", lambda: False)
    before = os.environ.get(hardware.ONEDNN_ENV)
    assert not hardware.use_onednn() and os.environ.get(hardware.ONEDNN_ENV) == before
    assert hardware.onednn_on() is (case == "vnni_cpu")


def test_importing_unit_tf_turns_onednn_on_before_tensorflow_loads():
    """In a fresh interpreter without $TF_ENABLE_ONEDNN_OPTS: set by `import unit_tf` exactly where TensorFlow
    would leave oneDNN off on this machine, and never once TensorFlow is loaded."""
    env = {k: v for k, v in os.environ.items() if k != hardware.ONEDNN_ENV}
    show = f"import os; print(os.environ.get('{hardware.ONEDNN_ENV}'))"
    first = subprocess.run([sys.executable, "-c", f"import unit_tf; {show}"], env=env, capture_output=True,
                           text=True, timeout=120)
    expected = "1" if hardware._x86_linux() and not hardware.tf_onednn_default() else "None"
    assert first.stdout.strip() == expected, first.stderr
    late = subprocess.run([sys.executable, "-c", f"import tensorflow, unit_tf; {show}"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert late.stdout.strip().splitlines()[-1] == "None", late.stderr


def test_bf16_is_refused_where_onednn_has_no_bf16_kernels(monkeypatch, capsys):
    """oneDNN on, no AVX-512, bfloat16 not native: one error naming the fix, before any bf16 op runs."""
    monkeypatch.setenv(hardware.ONEDNN_ENV, "1")
    monkeypatch.setenv("UNIT_AVX512", "0")
    monkeypatch.setattr(hardware, "_x86_linux", lambda: True)
    with pytest.raises(UserError, match=f"{hardware.ONEDNN_ENV}=0") as refused:
        hardware.resolve_precision("bf16")
    assert "--mixed-precision off" in str(refused.value) and not isinstance(refused.value, RestartInEnvironment)
    monkeypatch.setenv(hardware.ONEDNN_AUTO_ENV, "1")  # unit_tf turned oneDNN on: a command restarts without it
    with pytest.raises(RestartInEnvironment) as restart:
        hardware.resolve_precision("bf16")
    assert restart.value.changes == {hardware.ONEDNN_ENV: "0", hardware.ONEDNN_AUTO_ENV: None}
    monkeypatch.delenv(hardware.ONEDNN_AUTO_ENV)
    assert hardware.resolve_precision("off") == hardware.resolve_precision("auto") == "float32"
    assert hardware.resolve_precision("fp16", warn=False) == "float16"  # float16 does not go through oneDNN
    monkeypatch.setenv(hardware.ONEDNN_ENV, "0")  # TensorFlow's own kernels emulate it (slowly)
    assert hardware.resolve_precision("bf16", warn=False) == "bfloat16"
    monkeypatch.setenv(hardware.ONEDNN_ENV, "1")
    monkeypatch.setenv("UNIT_AVX512", "1")  # oneDNN emulates bfloat16 with AVX-512
    assert hardware.resolve_precision("bf16", warn=False) == "bfloat16"
    monkeypatch.setenv("UNIT_NATIVE_BF16", "1")
    monkeypatch.setenv("UNIT_AVX512", "0")
    assert hardware.resolve_precision("bf16", warn=False) == "bfloat16"
    assert capsys.readouterr().err == ""


def test_cpu_model_id_names_family_and_model(monkeypatch):
    monkeypatch.setattr(hardware, "_cpuinfo", lambda: "processor\t: 0\ncpu family\t: 26\nmodel\t\t: 2\n"
                                                      "model name\t: AMD EPYC\nprocessor\t: 1\nmodel\t\t: 9\n")
    assert hardware.cpu_model_id() == "AMD EPYC (family 26, model 2)"
    monkeypatch.setattr(hardware, "_cpuinfo", lambda: "")
    assert hardware.cpu_model_id() == hardware.cpu_name()
