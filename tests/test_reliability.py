"""Crash-safe resume, signals, the divergence guard, run-directory rules, disk errors, fuzzed input."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from helpers import ROOT, run_script, tiny_flags

import train as train_cli
from unit_tf.errors import TrainingDiverged, UserError


def _base(data_dir, run, steps, *extra):
    return ["train.py", "--dataset", "mnist_usps", "--data-dir", str(data_dir), "--output-dir", str(run),
            "--batch-size", "8", "--no-export", *tiny_flags(), "--steps", str(steps), *extra]


def _latest_step(run: Path) -> int:
    latest = tf.train.latest_checkpoint(str(run / "checkpoints"))
    return int(latest.rsplit("-", 1)[1]) if latest else 0


def _weights(run: Path, step: int) -> dict[str, np.ndarray]:
    reader = tf.train.load_checkpoint(str(run / "checkpoints" / f"ckpt-{step}"))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name.startswith("variables/")}


def _start(args: list[str]) -> subprocess.Popen:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(proc: subprocess.Popen, condition, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"training ended early ({proc.returncode}): {proc.stderr.read()[-2000:]}")
        if time.time() > deadline:
            raise TimeoutError
        time.sleep(0.05)


def test_kill_9_then_resume_equals_an_uninterrupted_run(tmp_path, data_dir):
    killed = tmp_path / "killed"
    proc = _start(_base(data_dir, killed, 1000, "--deterministic"))
    try:
        _wait_for(proc, lambda: _latest_step(killed) >= 4)
    finally:
        proc.kill()  # SIGKILL: no handler runs
        proc.wait()
    stopped_at = _latest_step(killed)
    target = stopped_at + 4
    resumed = run_script(*_base(data_dir, killed, target, "--deterministic"))
    assert resumed.returncode == 0, resumed.stderr
    assert f"from step {stopped_at}" in resumed.stdout
    straight = tmp_path / "straight"
    uninterrupted = run_script(*_base(data_dir, straight, target, "--deterministic"))
    assert uninterrupted.returncode == 0, uninterrupted.stderr
    a, b = _weights(killed, target), _weights(straight, target)
    assert a.keys() == b.keys() and any("moving_mean" in k for k in a)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    with open(killed / "metrics.csv", newline="") as f:
        steps = [int(row["step"]) for row in csv.DictReader(f)]
    assert steps == sorted(set(steps)) and steps[-1] == target  # no duplicate rows from the killed process


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_saves_a_checkpoint_and_exits(tmp_path, data_dir, sig, code):
    run = tmp_path / "run"
    proc = _start(_base(data_dir, run, 100000, "--set", "train.checkpoint_every=100000"))
    _wait_for(proc, lambda: (run / "metrics.csv").is_file() and (run / "metrics.csv").stat().st_size > 150)
    sent = time.time()
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    assert time.time() - sent < 15
    lines = [line for line in stderr.splitlines() if line.startswith("train.py:")]
    assert len(lines) == 1 and f"stopped by {signal.Signals(sig).name}" in lines[0], stderr
    saved = _latest_step(run)
    assert saved > 0 and f"at step {saved}" in lines[0]
    assert "Traceback" not in stderr


def test_a_signal_during_the_classifier_warm_up_stops_it(tmp_path, data_dir):
    """The domain-adaptation presets start with a source-only classifier warm-up: a signal there stops it at a
    step too, with one line, and records nothing."""
    run = tmp_path / "run"
    proc = _start(_base(data_dir, run, 10, "--set", "train.classifier_warmup_steps=1000000"))
    _wait_for(proc, lambda: proc.stdout.readline().startswith("Source-only classifier:"))
    sent = time.time()
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert time.time() - sent < 15
    lines = [line for line in stderr.splitlines() if line.startswith("train.py:")]
    assert len(lines) == 1 and "stopped by SIGTERM during the source-only classifier warm-up" in lines[0], stderr
    assert "nothing was saved" in lines[0] and "Traceback" not in stderr
    assert _latest_step(run) == 0 and not (run / "eval" / "source_only.json").exists()


def test_nan_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, data_dir):
    run = tmp_path / "run"
    result = run_script("tests/nan_train.py", "--nan-step", "5", *_base(data_dir, run, 10)[1:])
    assert result.returncode == 3, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("train.py:")]
    assert len(lines) == 1 and "non-finite loss 'd_gan' at step 5" in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert _latest_step(run) == 4
    weights = _weights(run, 4)
    assert all(np.all(np.isfinite(v)) for v in weights.values())


def test_nan_step_is_skipped_on_request(tmp_path, data_dir):
    run = tmp_path / "run"
    result = run_script("tests/nan_train.py", "--nan-step", "5", *_base(data_dir, run, 8, "--on-nan", "skip-step")[1:])
    assert result.returncode == 0, result.stderr
    assert "step 5: non-finite loss, update skipped" in result.stderr
    assert _latest_step(run) == 8
    assert all(np.all(np.isfinite(v)) for v in _weights(run, 8).values())
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert all(np.isfinite(float(row["g_loss"])) for row in rows)


def _args(data_dir, run, *extra):
    return _base(data_dir, run, 2, *extra)[1:]


def test_resume_keeps_the_saved_config_and_overwrite_replaces(tmp_path, data_dir):
    run = tmp_path / "run"
    train_cli.main(_args(data_dir, run))
    with pytest.raises(UserError, match="--resume"):
        train_cli.main(_args(data_dir, run, "--set", "loss.gan=1"))
    # --resume: continue with the saved settings; a defining change on the command line is not applied.
    train_cli.main([*_args(data_dir, run, "--set", "loss.gan=1", "--resume"), "--steps", "4"])
    config = train_cli.make_config(train_cli.parse_args(["--resume", "--output-dir", str(run)]))
    assert config.loss.gan == 3.0 and config.train.steps == 4 and _latest_step(run) == 4
    # --overwrite: a new run in the same place.
    train_cli.main(_args(data_dir, run, "--set", "loss.gan=1", "--overwrite"))
    config = train_cli.make_config(train_cli.parse_args(["--resume", "--output-dir", str(run)]))
    assert config.loss.gan == 1.0 and _latest_step(run) == 2
    with pytest.raises(UserError, match="exclude"):
        train_cli.main(_args(data_dir, run, "--resume", "--overwrite"))


def test_overwrite_never_deletes_a_folder_that_is_no_run(tmp_path, data_dir):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "thesis.tex").write_text("precious")
    with pytest.raises(UserError, match="not empty"):
        train_cli.main(_args(data_dir, folder, "--overwrite"))
    assert (folder / "thesis.tex").read_text() == "precious"


def test_full_disk_is_a_clear_error_and_keeps_the_previous_checkpoint(tmp_path, data_dir, monkeypatch):
    run = tmp_path / "run"
    train_cli.main(_args(data_dir, run))

    def full(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tf.train.CheckpointManager, "save", full)
    with pytest.raises(UserError, match="No space left on device") as err:
        train_cli.main([*_args(data_dir, run), "--steps", "4"])
    assert "ckpt-2" in str(err.value)
    assert _latest_step(run) == 2


def test_a_half_written_checkpoint_is_ignored(tmp_path, data_dir):
    run = tmp_path / "run"
    train_cli.main(_args(data_dir, run))
    # A crash mid-write: the files of ckpt-4 exist (truncated), the index still names ckpt-2.
    for suffix in (".index", ".data-00000-of-00001"):
        (run / "checkpoints" / f"ckpt-4{suffix}").write_bytes(b"\x00partial")
    train_cli.main([*_args(data_dir, run), "--steps", "4"])
    assert _latest_step(run) == 4


def test_divergence_error_type():
    assert TrainingDiverged("x").exit_code == 3 and UserError("x").exit_code == 2


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    from unit_tf.files import atomic_path, write_text

    path = write_text(tmp_path / "config.json", "old\n")
    with pytest.raises(OSError), atomic_path(path) as tmp:
        tmp.write_text("half a ne")
        raise OSError("disk full")
    assert path.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]
    write_text(path, "new\n")
    assert path.read_text() == "new\n" and sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]
