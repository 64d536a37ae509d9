"""unit_tf.hardware: which precision `auto` picks, the GPU capability rule, the one warning for emulation."""

from __future__ import annotations

import re

import pytest

from unit_tf import hardware
from unit_tf.errors import UserError


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
