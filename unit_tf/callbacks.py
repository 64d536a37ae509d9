"""Keras callbacks that monitor a run: metrics.csv + TensorBoard scalars, sample grids, checkpoints, progress."""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from unit_tf.checkpoints import RunCheckpoint
from unit_tf.distribute import any_worker
from unit_tf.files import atomic_path
from unit_tf.images import GRID_ROWS, make_grid, write_png

CSV_PREFIX = ("step", "wall_time", "steps_per_sec")  # then the model's terms (unit_tf.losses.TERMS)


def truncate_csv(path: Path, last_step: int) -> None:
    """Drop rows logged after `last_step` (a run killed after its last checkpoint), keeping the header."""
    if not path.is_file():
        return
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    kept = [rows[0]] + [r for r in rows[1:] if r and r[0].isdigit() and int(r[0]) <= last_step]
    if len(kept) != len(rows):
        with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
            csv.writer(f).writerows(kept)


class TrainingLogger(keras.callbacks.Callback):
    """Every `log_every` steps: a `metrics.csv` row, TensorBoard scalars and (without a terminal) a line.

    The loss metrics are reset after each row, so every value is the mean over its logging interval.
    """

    def __init__(self, csv_path: Path, writer: tf.summary.SummaryWriter, log_every: int, total_steps: int,
                 print_lines: bool | None = None) -> None:
        super().__init__()
        self.csv_path = Path(csv_path)
        self.writer = writer
        self.log_every = log_every
        self.total_steps = total_steps
        self.print_lines = (not sys.stdout.isatty()) if print_lines is None else print_lines

    def on_train_begin(self, logs: dict | None = None) -> None:
        new = not self.csv_path.is_file() or self.csv_path.stat().st_size == 0
        self.file = self.csv_path.open("a", newline="")
        self.csv = csv.writer(self.file)
        self.names = tuple(self.model.metric_names)
        if new:
            self.csv.writerow((*CSV_PREFIX, *self.names))
        self.last_time, self.last_step = time.time(), self.model.step

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        step = self.model.step
        if step % self.log_every and step != self.total_steps:
            return
        now = time.time()
        rate = (step - self.last_step) / max(now - self.last_time, 1e-9)
        values = {name: float(np.asarray(logs[name])) for name in self.names if logs and name in logs}
        self.csv.writerow([step, f"{now:.3f}", f"{rate:.4f}", *(f"{values.get(n, float('nan')):.6g}"
                                                                  for n in self.names)])
        self.file.flush()
        with self.writer.as_default(step=step):
            for name, value in values.items():
                tf.summary.scalar(f"loss/{name}", value)
            tf.summary.scalar("speed/steps_per_sec", rate)
        if self.print_lines:
            shown = " ".join(f"{k}={v:.4g}" for k, v in values.items())
            print(f"step {step}/{self.total_steps} {rate:.2f} steps/s {shown}", flush=True)
        for metric in self.model.metrics:
            metric.reset_state()
        self.last_time, self.last_step = now, step

    def on_train_end(self, logs: dict | None = None) -> None:
        self.file.close()
        self.writer.flush()


class SampleWriter(keras.callbacks.Callback):
    """Every `sample_every` steps and at the end: `samples/step_<N>.png` and a TensorBoard image.

    Rows: x_a, x_a->a, x_a->b, x_a->b->a, then the same for x_b (inference mode, latent means).
    """

    def __init__(self, sample_dir: Path, writer: tf.summary.SummaryWriter, x_a: np.ndarray, x_b: np.ndarray,
                 every: int) -> None:
        super().__init__()
        self.sample_dir = Path(sample_dir)
        self.writer = writer
        self.x_a = tf.constant(x_a, tf.float32)
        self.x_b = tf.constant(x_b, tf.float32)
        self.every = every
        self.last_written = -1
        self._streams = None

    def write(self, step: int) -> Path:
        if self._streams is None:
            self._streams = tf.function(self.model.streams)
        streams = self._streams(self.x_a, self.x_b)
        grid = make_grid([streams[name] for name in GRID_ROWS])
        path = write_png(grid, self.sample_dir / f"step_{step}.png")
        with self.writer.as_default(step=step):
            tf.summary.image("samples", grid[None], step=step)
        self.writer.flush()
        self.last_written = step
        return path

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        step = self.model.step
        if step % self.every == 0:
            self.write(step)

    def on_train_end(self, logs: dict | None = None) -> None:
        step = self.model.step
        if step != self.last_written and not self.model.stop_training:
            self.write(step)


class DivergenceGuard(keras.callbacks.Callback):
    """Watches every step for non-finite losses (`train.on_nan`).

    stop: the run ends at the first non-finite loss term, which is named; no checkpoint is written after it
    (the optimizers skipped that update, and the last checkpoint on disk stays the newest).
    skip-step: the optimizers skipped the update; one line is printed, and the run only stops after
    `max_consecutive` skipped steps in a row.
    """

    def __init__(self, mode: str, max_consecutive: int = 20) -> None:
        super().__init__()
        self.mode = mode
        self.max_consecutive = max_consecutive
        self.diverged: tuple[int, str] | None = None
        self.consecutive = 0

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.last_step = self.model.step

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        step = self.model.step
        attempted = self.last_step + 1
        if self.mode == "skip-step":
            skipped = step == self.last_step
            self.consecutive = self.consecutive + 1 if skipped else 0
            if skipped:
                print(f"step {attempted}: non-finite loss, update skipped", file=sys.stderr, flush=True)
            if self.consecutive >= self.max_consecutive:
                self._stop(attempted, f"{self.consecutive} consecutive steps")
        else:
            for name in self.model.metric_names:
                if logs and name in logs and not np.isfinite(float(np.asarray(logs[name]))):
                    self._stop(attempted, name)
                    break
        self.last_step = step

    def _stop(self, step: int, what: str) -> None:
        self.diverged = (step, what)
        self.model.stop_training = True


class StopRequests(keras.callbacks.Callback):
    """Ends training after the current step on SIGINT / SIGTERM (`received`, see training.signal_guard) or
    once `minutes` of wall-clock time have passed since `start` (0: no limit).

    Under multi-worker training the workers agree after every step (one small collective): a signal or a
    deadline on any worker stops all of them at the same step, so none is left waiting for the others.
    """

    def __init__(self, received: list[int], minutes: float, start: float | None = None,
                 strategy: tf.distribute.Strategy | None = None) -> None:
        super().__init__()
        self.received = received
        self.deadline = (start or time.time()) + 60.0 * minutes if minutes > 0 else None
        self.strategy = strategy
        self.signalled = False  # a signal arrived here or on another worker
        self.time_reached = False

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        signalled = bool(self.received)
        late = self.deadline is not None and time.time() >= self.deadline
        if self.strategy is not None:
            signalled, late = any_worker(self.strategy, [signalled, late])
        self.signalled, self.time_reached = signalled, late
        if signalled or late:
            self.model.stop_training = True


class CheckpointSaver(keras.callbacks.Callback):
    """Saves model, optimizers and RNG state every `every` steps and when training ends (not after divergence)."""

    def __init__(self, checkpoint: RunCheckpoint, every: int, guard: DivergenceGuard | None = None) -> None:
        super().__init__()
        self.checkpoint = checkpoint
        self.every = every
        self.guard = guard

    def _healthy(self) -> bool:
        return self.guard is None or self.guard.diverged is None

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self._healthy() and self.model.step % self.every == 0:
            self.checkpoint.save()

    def on_train_end(self, logs: dict | None = None) -> None:
        if self._healthy():
            self.checkpoint.save()


def format_duration(seconds: float) -> str:
    """A wall-clock duration for a person: '42 s', '13 min 50 s', '2 h 5 min'."""
    seconds = max(0, int(seconds + 0.5))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


class ProgressLines(keras.callbacks.Callback):
    """Progress of a fit of `total` steps, for a person waiting on it. One line with the expected duration
    once `estimate_after` steps past the first (which traces the step function) and `estimate_seconds` have
    passed, or at the first progress line if sooner; with `every` > 0, every `every` steps a line with the
    step, the running means of the fit's logs (e.g. accuracy so far), steps/s and the time left. Rates leave
    out the first step. `after_bar`: a Keras progress bar shares the line, so the estimate starts a new one."""

    def __init__(self, label: str, total: int, every: int = 0, estimate_after: int = 10,
                 estimate_seconds: float = 1.0, after_bar: bool = False) -> None:
        super().__init__()
        self.label = label
        self.total = total
        self.every = every
        self.estimate_after = estimate_after
        self.estimate_seconds = estimate_seconds
        self.after_bar = after_bar

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.step, self.first_done, self.estimated = 0, 0.0, False

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        now = time.time()
        self.step += 1
        if self.step == 1:
            self.first_done = now
        rate = (self.step - 1) / max(now - self.first_done, 1e-9)  # 0 after the first step
        line_due = self.every and (self.step % self.every == 0 or self.step == self.total)
        settled = self.step - 1 >= self.estimate_after and now - self.first_done >= self.estimate_seconds
        if not self.estimated and rate and (settled or line_due):
            self.estimated = True
            newline = "\n" if self.after_bar else ""
            print(f"{newline}{self.label}: about {format_duration(self.total / rate)} for {self.total} steps "
                  f"({rate:.2f} steps/s over steps 2-{self.step})", flush=True)
        if line_due:
            shown = " ".join(f"{k}={float(np.mean(np.asarray(v))):.4g}" for k, v in (logs or {}).items())
            left = f", {format_duration((self.total - self.step) / rate)} left" if rate else ""
            print(f"{self.label} step {self.step}/{self.total} {shown} {rate:.2f} steps/s{left}", flush=True)
