"""benchmarks/peer_official.py: the shims, the pairing and the JSON it prints, without torch or the official code
(the official side runs when torch is installed and $UNIT_OFFICIAL_REPO names a version_02 checkout)."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
import types

import numpy as np
import pytest
from helpers import ROOT, run_script

sys.path.insert(0, str(ROOT / "benchmarks"))

from official_shims import REQUIRED, check_official_repo, patch_numpy, patch_tensor, stub_module  # noqa: E402
from peer_official import ISA_CAPS, cap_isa, run_pairs, summarize  # noqa: E402
from peer_step import serve  # noqa: E402

from unit_tf import hardware  # noqa: E402
from unit_tf.errors import UserError  # noqa: E402

HAS_TORCH = importlib.util.find_spec("torch") is not None


def fake_checkout(root, skip: str = "") -> str:
    """The files check_official_repo looks at, each holding the line it looks for (all but `skip`)."""
    for name, needle in REQUIRED.items():
        if name != skip:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(f"# official\n{needle} *\n")
    return str(root)


def test_check_official_repo_accepts_the_version_02_layout(tmp_path):
    assert check_official_repo(fake_checkout(tmp_path)) == tmp_path


def test_check_official_repo_names_what_is_missing(tmp_path):
    with pytest.raises(UserError, match="not a mingyuliutw/UNIT checkout at version_02.*cocogan_trainer_da.py"):
        check_official_repo(fake_checkout(tmp_path, skip="src/trainers/cocogan_trainer_da.py"))
    (tmp_path / "src/trainers/cocogan_trainer_da.py").write_text("class COCOGANTrainer: pass\n")  # other class
    with pytest.raises(UserError, match="lacks 'class COCOGANDAContextTrainer'"):
        check_official_repo(tmp_path)


@pytest.mark.parametrize("layout", ["master", "missing"])
def test_cli_rejects_a_folder_that_is_not_a_version_02_checkout(tmp_path, layout):
    if layout == "master":  # master's layout: trainer.py, networks.py at the top, no src/trainers
        for name in ("trainer.py", "networks.py", "train.py"):
            (tmp_path / name).write_text("")
    repo = tmp_path if layout == "master" else tmp_path / "nowhere"
    result = run_script("benchmarks/peer_official.py", "--official-repo", str(repo), "--pairs", "1")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("benchmarks/peer_official.py: error: --official-repo"), lines
    assert "git -C UNIT checkout version_02" in lines[0] and "Traceback" not in result.stderr


@pytest.mark.skipif(HAS_TORCH, reason="torch is installed")
def test_cli_without_torch_says_how_to_get_it(tmp_path):
    result = run_script("benchmarks/peer_official.py", "--official-repo", fake_checkout(tmp_path), "--pairs", "1")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "benchmarks/peer_official.py: error: torch is not installed: the official side needs it (pip install "
        "torch; it is this benchmark's optional dependency, not unit-tf's)"]


def test_numpy_shims_restore_np_int_and_newshape():
    np_like = types.SimpleNamespace(reshape=np.reshape)  # a stand-in: the real numpy stays untouched
    patch_numpy(np_like)
    patch_numpy(np_like)  # twice: still one wrapper
    assert np_like.int is int and np.ones(2, dtype=np_like.int).dtype == np.ones(2, dtype=int).dtype
    coords = np.arange(12, dtype=np.float32)
    assert np_like.reshape(coords, newshape=[2, 3, 2]).shape == (2, 3, 2)  # the official _create_xy_image call
    assert np_like.reshape(coords, (3, 4), order="F")[1, 0] == 1.0  # positional use unchanged
    assert np_like.reshape(coords, shape=-1).shape == (12,)


def test_tensor_shims_keep_tensors_on_the_cpu_and_index_0d_losses():
    class Tensor:  # what the official code calls on torch tensors
        def __init__(self, value: object, dtype: str = "torch.float32") -> None:
            self.value, self.dtype = np.asarray(value, np.float32), dtype

        def numpy(self) -> np.ndarray:
            if self.dtype == "torch.bfloat16":
                raise TypeError("Got unsupported ScalarType BFloat16")
            return self.value

        def float(self) -> Tensor:
            return Tensor(self.value)

        def cuda(self, device: int = 0) -> Tensor:
            raise AssertionError("Torch not compiled with CUDA enabled")

    patch_tensor(Tensor)
    patch_tensor(Tensor)  # twice: still one wrapper
    loss, batch = Tensor(2.5), Tensor([[1.0, 2.0]])
    assert loss.cuda(0) is loss and loss.cuda() is loss
    assert loss.numpy()[0] == 2.5  # `loss.data.cpu().numpy()[0]`
    assert batch.numpy().shape == (1, 2) and batch.numpy() is batch.value
    assert Tensor(0.5, "torch.bfloat16").numpy()[0] == 0.5  # a loss under bf16 autocast


def test_stub_module_imports_and_fails_only_on_use():
    name = "unit_tf_absent_module_for_test"
    try:
        stub_module(name, "not needed here")
        module = __import__(name)
        with pytest.raises(ImportError, match=f"{name}.getGaussianKernel: {name} is not installed .not needed here"):
            module.getGaussianKernel(5, -1)
    finally:
        sys.modules.pop(name, None)
    stub_module("json", "installed")
    assert sys.modules["json"] is json  # an installed module is left alone


class FakeSide:
    """A peer_official side whose steps take the given times; records the order the steps ran in."""

    def __init__(self, name: str, times: list[float], log: list[str]) -> None:
        self.name, self._times, self._log = name, iter(times), log

    def step(self) -> float:
        self._log.append(self.name)
        return next(self._times)


def test_pairs_alternate_which_side_goes_first_and_the_json_adds_up():
    log: list[str] = []
    pairs = run_pairs(FakeSide("official", [22.0, 20.0, 30.0], log), FakeSide("ours", [16.0, 20.0, 15.0], log), 3)
    assert log == ["official", "ours", "ours", "official", "official", "ours"]
    assert [p["first"] for p in pairs] == ["official", "ours", "official"]
    assert [p["ratio"] for p in pairs] == [1.375, 1.0, 2.0]
    run = summarize("off", pairs, {"flops_per_step": 1.58e12, "library": "torch x"},
                    {"flops_per_step": 0.97e12, "library": "tensorflow y", "peak_matmul_gflops": 100.0})
    assert run["ratio_official_over_ours"] == 1.375  # the median of the pair ratios, not of the medians (22 / 16)
    assert run["ratio_official_fastest_over_ours_median"] == 1.25  # 20 / 16
    assert run["official"] == {"step_s_median": 22.0, "step_s_fastest": 20.0, "flops_per_step": 1580000000000,
                               "achieved_gflops": 71.8, "mfu": 0.718, "library": "torch x"}
    assert run["ours"]["step_s_median"] == 16.0 and run["ours"]["achieved_gflops"] == 60.6
    assert run["peak_matmul_gflops"] == 100.0 and run["ours"]["mfu"] == 0.606
    assert "executed_gflops" not in run["ours"]
    ours = {"flops_per_step": 0.97e12, "executed_flops_per_step": 0.55e12, "peak_matmul_gflops": 100.0}
    executed = summarize("off", pairs, {"flops_per_step": 1.58e12}, ours)["ours"]
    assert executed["achieved_gflops"] == 60.6 and executed["executed_flops_per_step"] == 550000000000
    assert executed["executed_gflops"] == 34.4 and executed["executed_mfu"] == 0.344  # 0.55e12 / 16 s
    json.dumps(run)


def test_serve_times_one_step_per_command():
    calls = []
    out = io.StringIO()
    serve(lambda: calls.append(1), {"flops_per_step": 7, "library": "x"}, ["step\n", "step\n"], out)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines[0] == {"ready": True, "flops_per_step": 7, "library": "x"} and len(calls) == 2
    assert len(lines) == 3 and all(line["seconds"] >= 0 for line in lines[1:])
    with pytest.raises(ValueError, match="unknown command 'go'"):
        serve(lambda: None, {}, ["go\n"], io.StringIO())


def step_worker(*args: str, steps: int = 2) -> list[dict]:
    """Run benchmarks/peer_step.py with `steps` step commands; its JSON replies."""
    import subprocess

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run([sys.executable, "benchmarks/peer_step.py", *args, "--threads", "2", "--warmup", "1"],
                            cwd=ROOT, env=env, input="step\n" * steps, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_our_side_times_the_digits_official_step():
    replies = step_worker("ours", "--set", "model.gen_ch=4", "--set", "model.dis_ch=4", "--set", "data.batch_size=8")
    assert replies[0]["ready"] and replies[0]["flops_per_step"] > 0 and replies[0]["library"].startswith("tensorflow")
    assert replies[0]["peak_matmul_gflops"] > 0 and "oneDNN" in replies[0]["library"]
    assert replies[0]["executed_flops_per_step"] > 0
    assert len(replies) == 3 and all(r["seconds"] > 0 for r in replies[1:])


@pytest.mark.skipif(not (HAS_TORCH and os.environ.get("UNIT_OFFICIAL_REPO")),
                    reason="needs torch and $UNIT_OFFICIAL_REPO (a mingyuliutw/UNIT checkout at version_02)")
@pytest.mark.parametrize("precision", ["off", "bf16"])
def test_official_side_runs_the_official_trainer(precision):
    replies = step_worker("official", "--official-repo", os.environ["UNIT_OFFICIAL_REPO"], "--precision", precision,
                          "--set", "gen_ch=8", "--set", "dis_ch=8", "--set", "batch_size=4", steps=1)
    assert replies[0]["ready"] and replies[0]["library"].startswith("torch") and replies[0]["flops_per_step"] > 0
    assert len(replies) == 2 and replies[1]["seconds"] > 0


@pytest.mark.parametrize("ending, message", [("sys.exit(3)", "exited with code 3"),
                                             ("os.kill(os.getpid(), signal.SIGTERM)", "was killed by signal 15")])
def test_a_side_that_dies_is_one_error_line(tmp_path, monkeypatch, ending, message):
    import peer_official

    script = tmp_path / "dies.py"
    script.write_text(f"import os, signal, sys\nprint('not json')\n{ending}\n")
    monkeypatch.setattr(peer_official, "STEP_SCRIPT", script)
    with pytest.raises(UserError, match=f"the official side's process .benchmarks/peer_step.py. {message}"):
        peer_official.Side("official", [], threads=1)


@pytest.mark.skipif("avx2" not in hardware.cpu_flags(), reason="needs an x86 CPU with AVX2")
def test_isa_avx2_caps_onednn_and_our_cpu_decisions_in_child_processes(monkeypatch):
    """--isa avx2: a child process (as each side is) runs oneDNN at AVX2 and takes our forms and precision for
    CPUs without AVX-512 / native bfloat16, whatever this CPU has."""
    for name in ISA_CAPS["avx2"]:
        monkeypatch.setenv(name, "unset by the test")  # restored after the test; cap_isa overwrites them
    cap_isa("avx2")
    code = ("import tensorflow as tf; from unit_tf import hardware; "
            "tf.nn.conv2d(tf.ones([1, 8, 8, 4]), tf.ones([3, 3, 4, 4]), 1, 'SAME'); "
            "print('decisions', hardware.avx512(), hardware.native_bf16())")
    env = dict(os.environ, ONEDNN_VERBOSE="1", TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "isa:Intel AVX2\n" in done.stdout + done.stderr  # oneDNN's start-up line: the ISA it dispatches to
    assert "decisions False False" in done.stdout


def test_isa_takes_native_and_the_caps_only(tmp_path):
    result = run_script("benchmarks/peer_official.py", "--official-repo", fake_checkout(tmp_path), "--isa", "avx512")
    assert result.returncode == 2 and "--isa" in result.stderr and "avx512" in result.stderr
