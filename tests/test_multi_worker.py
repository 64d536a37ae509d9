"""Multi-worker training: two worker processes on localhost (TF_CONFIG), compared with one process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from helpers import ROOT, TINY, run_script

from unit_tf.config import resolve_config
from unit_tf.errors import UserError

# Latent noise off: each replica draws its own noise (the replica id is folded into the seed), so with
# noise two workers would differ from one process by design; everything else must agree.
SETTINGS = {**TINY, "data.batch_size": 8, "model.latent_noise_std": 0.0, "train.steps": 4,
            "train.log_every": 2, "train.sample_every": 2, "train.checkpoint_every": 2}


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def settings(data_dir, strategy: str) -> list[str]:
    values = {**SETTINGS, "data.data_dir": str(data_dir), "train.strategy": strategy}
    return [f"{k}={v}" for k, v in values.items()]


def test_two_workers_agree_with_each_other_and_with_one_process(tmp_path, data_dir):
    ports = free_ports(2)
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    worker_tmp = tmp_path / "worker_tmp"
    worker_tmp.mkdir()
    procs = []
    for index in range(2):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TMPDIR=str(worker_tmp),
                   TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
        procs.append(subprocess.Popen(
            [sys.executable, "tests/worker_main.py", str(tmp_path / "multi" / "run"), str(tmp_path / f"w{index}.npz"),
             *settings(data_dir, "multi_worker")],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    procs.append(subprocess.Popen(  # the same run in one process, alongside
        [sys.executable, "tests/worker_main.py", str(tmp_path / "single" / "run"), str(tmp_path / "one.npz"),
         "--initial", str(tmp_path / "init.npz"), *settings(data_dir, "one_device")],
        cwd=ROOT, env={k: v for k, v in os.environ.items() if k != "TF_CONFIG"}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True))
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out[-3000:]

    w0, w1, one, init = (np.load(tmp_path / f"{name}.npz") for name in ("w0", "w1", "one", "init"))
    assert set(w0.files) == set(one.files) == set(init.files)
    for name in w0.files:  # synchronous data parallelism: both workers hold the same model
        np.testing.assert_array_equal(w0[name], w1[name], err_msg=name)

    # The same training as one process at the same global batch (global batch-norm statistics, mean
    # gradient): the two updates differ only by float summation order, which Adam amplifies where a
    # gradient is near zero, so they are compared as whole vectors.
    def flat(weights) -> np.ndarray:  # noqa: ANN001
        return np.concatenate([weights[n].ravel().astype(np.float64) for n in sorted(w0.files)])

    update_multi, update_one = flat(w0) - flat(init), flat(one) - flat(init)
    relative = np.linalg.norm(update_multi - update_one) / np.linalg.norm(update_one)
    cosine = update_multi @ update_one / (np.linalg.norm(update_multi) * np.linalg.norm(update_one))
    assert relative < 0.05 and cosine > 0.999, (relative, cosine)

    # Only the chief wrote: the run directory, its checkpoints and one export; the other worker's private
    # folder is gone.
    run = tmp_path / "multi" / "run"
    assert (run / "config.json").is_file() and (run / "checkpoints" / "checkpoint").is_file()
    assert [p.name for p in (tmp_path / "multi" / "export").iterdir()] == ["1"]
    assert list(worker_tmp.iterdir()) == []


def test_multi_worker_needs_a_cluster(monkeypatch):
    from unit_tf.distribute import make_strategy

    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(UserError, match="TF_CONFIG"):
        make_strategy("multi_worker")
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "chief"}}')
    with pytest.raises(UserError, match="not a valid cluster description"):
        make_strategy("multi_worker")
    resolve_config("mnist_usps", "digits_small", overrides={"train.strategy": "multi_worker"})


def start_workers(data_dir, run, steps: int, *extra: str, preset: str = "digits_small") -> list[subprocess.Popen]:
    """train.py as two workers on localhost (free ports), writing `run`; stdout and stderr piped."""
    cluster = {"worker": [f"localhost:{p}" for p in free_ports(2)]}
    args = ["train.py", "--dataset", "mnist_usps", "--preset", preset, "--data-dir", str(data_dir),
            "--output-dir", str(run), "--batch-size", "8", "--no-export", "--steps", str(steps),
            "--strategy", "multi_worker", *[a for k, v in TINY.items() for a in ("--set", f"{k}={v}")],
            "--set", "train.checkpoint_every=100000", *extra]
    return [subprocess.Popen(
        [sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
                 TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})))
        for i in range(2)]


def test_a_signal_to_one_worker_stops_the_cluster_and_the_same_commands_resume(tmp_path, data_dir):
    """Preemption of one worker: every worker saves and exits 143 at the same step; restarted, they go on."""
    run = tmp_path / "run"
    procs = start_workers(data_dir, run, 100000)
    deadline = time.time() + 180
    while not ((run / "metrics.csv").is_file() and (run / "metrics.csv").stat().st_size > 150):
        assert all(p.poll() is None for p in procs) and time.time() < deadline, "training did not start"
        time.sleep(0.05)
    procs[1].send_signal(signal.SIGTERM)  # the non-chief: the chief must notice and save
    outputs = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [143, 143], outputs
    assert "stopped by a signal to another worker" in outputs[0] and "stopped by SIGTERM" in outputs[1]
    saved = int(tf.train.latest_checkpoint(str(run / "checkpoints")).rsplit("-", 1)[1])
    assert saved > 0 and f"at step {saved}" in outputs[0]

    procs = start_workers(data_dir, run, saved + 4)
    outputs = [p.communicate(timeout=180)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert tf.train.latest_checkpoint(str(run / "checkpoints")).endswith(f"ckpt-{saved + 4}")


def test_a_signal_during_the_classifier_warm_up_stops_every_worker(tmp_path, data_dir):
    """Domain adaptation starts with a source-only warm-up; a SIGTERM there (TensorFlow's own multi-worker
    SIGTERM handler would swallow it) stops both workers at one step, saying nothing was saved."""
    run = tmp_path / "run"
    procs = start_workers(data_dir, run, 10, "--set", "train.classifier_warmup_steps=1000000",
                          preset="digits_da_small")
    try:
        for line in procs[0].stdout:  # the chief announces the warm-up
            if line.startswith("Source-only classifier:"):
                break
        else:
            raise AssertionError(f"no warm-up: {procs[0].communicate()[1][-2000:]}")
        procs[1].send_signal(signal.SIGTERM)
        outputs = [p.communicate(timeout=120)[1] for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [143, 143], outputs
    assert "stopped by a signal to another worker during the source-only classifier warm-up" in outputs[0]
    assert "stopped by SIGTERM during the source-only classifier warm-up" in outputs[1]
    assert "nothing was saved" in outputs[1] and "Traceback" not in outputs[0] + outputs[1]
    assert not (run / "checkpoints").is_dir() or not any((run / "checkpoints").iterdir())
    assert not (run / "eval" / "source_only.json").exists()


def test_a_taken_port_is_one_clear_error(tmp_path, data_dir):
    holder = socket.socket()
    holder.bind(("", 0))  # every interface, as the worker's gRPC server binds
    holder.listen()
    port, other = holder.getsockname()[1], free_ports(1)[0]
    try:
        result = run_script("train.py", "--dataset", "mnist_usps", "--data-dir", str(data_dir), "--output-dir",
                            str(tmp_path / "run"), "--steps", "2", env={"TF_CONFIG": json.dumps(
                                {"cluster": {"worker": [f"localhost:{port}", f"localhost:{other}"]},
                                 "task": {"type": "worker", "index": 0}})})
    finally:
        holder.close()
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("train.py:")]
    assert len(lines) == 1 and f"could not start this worker's server at localhost:{port}" in lines[0]
    assert "free ports in TF_CONFIG" in lines[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()
