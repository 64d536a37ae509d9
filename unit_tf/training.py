"""A training run end to end: run directory, data, model under the strategy, callbacks, `model.fit`.

Exporting the result is the caller's step (train.py), after `train` returns."""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import keras
import tensorflow as tf

from unit_tf import adaptation
from unit_tf.callbacks import (
    CheckpointSaver,
    DivergenceGuard,
    ProgressLines,
    SampleWriter,
    StopRequests,
    TrainingLogger,
    truncate_csv,
)
from unit_tf.checkpoints import RunCheckpoint
from unit_tf.config import UNITConfig
from unit_tf.data.pipeline import DomainData, to_model_range
from unit_tf.data.sources import load_run_data
from unit_tf.distribute import barrier, check_batch_size, is_chief, make_strategy
from unit_tf.errors import TrainingDiverged, TrainingInterrupted, UserError
from unit_tf.hardware import resolve_precision
from unit_tf.images import SAMPLE_IMAGES
from unit_tf.model import UNIT, build_model
from unit_tf.runs import RunDir


class TrainedRun(NamedTuple):
    """What `train` leaves: the model at `step`, whether this process is the chief (it wrote the run
    directory; under multi-worker training the others did not), and whether this call trained at all (False:
    the run was already at train.steps)."""

    model: UNIT
    step: int
    chief: bool
    trained: bool


@contextlib.contextmanager
def signal_guard() -> Iterator[list[int]]:
    """Turn SIGINT / SIGTERM into a request to stop after the current step (the list receives the signal)."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum: int, frame: object) -> None:
        if received:  # a second signal: stop now, without the checkpoint
            raise KeyboardInterrupt
        received.append(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def train(config: UNITConfig, output_dir: str | Path, verbose: int | None = None, overwrite: bool = False,
          callbacks: list[keras.callbacks.Callback] | None = None) -> TrainedRun:
    """Train (or resume) the run in `output_dir` up to `config.train.steps` (or train.time_limit_minutes).

    SIGINT / SIGTERM save a checkpoint and raise TrainingInterrupted; a non-finite loss raises
    TrainingDiverged (stop mode) with the last good checkpoint kept. `callbacks` are extra Keras callbacks
    (e.g. a benchmark's own measurements), run after the built-in ones.
    """
    started = time.time()
    config = resolved(config)
    if config.train.deterministic:
        tf.config.experimental.enable_op_determinism()
    strategy = make_strategy(config.train.strategy)
    check_batch_size(config.data.batch_size, strategy)
    shared = RunDir(Path(output_dir))  # the run directory; only the chief writes it
    chief = is_chief(strategy)
    # Other workers write the same files to a private folder, deleted at the end (TF multi-worker guide).
    run = shared if chief else RunDir(Path(tempfile.mkdtemp(prefix="unit_tf_worker_")))
    # From here on a signal is a stop request, honoured at the next step: under multi-worker training
    # TensorFlow's own SIGTERM handler (its preemption notifier) would otherwise swallow it.
    try:
        with signal_guard() as received:
            model, trained = _train(config, strategy, shared, run, started, verbose, overwrite, callbacks or [],
                                    received)
            return TrainedRun(model, model.step, chief, trained)
    finally:
        if not chief:
            shutil.rmtree(run.root, ignore_errors=True)


def resolved(config: UNITConfig) -> UNITConfig:
    """`config` with train.precision resolved for this machine (unit_tf.hardware.resolve_precision: "auto" ->
    bfloat16 where native, else float32; one warning line for an emulated bfloat16/float16): what the run
    computes in, and what its config.json records."""
    precision = resolve_precision(config.train.precision)
    if precision == config.train.precision:
        return config
    return dataclasses.replace(config, train=dataclasses.replace(config.train, precision=precision))


def _interrupted(received: list[int], when: str) -> TrainingInterrupted:
    """The error for a stop by a signal here (`received`) or, under multi-worker training, on another worker."""
    signum = received[0] if received else signal.SIGTERM
    name = signal.Signals(signum).name if received else "a signal to another worker"
    return TrainingInterrupted(signum, f"stopped by {name} {when}")


def _train(config: UNITConfig, strategy: tf.distribute.Strategy, shared: RunDir, run: RunDir, started: float,
           verbose: int | None, overwrite: bool, extra_callbacks: list[keras.callbacks.Callback],
           received: list[int]) -> tuple[UNIT, bool]:
    """`train` on this worker: `run` is where it writes (the run directory on the chief), `shared` the run
    directory it resumes from, `received` the signals that arrived (see signal_guard). Returns the model and
    whether it trained."""
    data = load_run_data(config, SAMPLE_IMAGES)
    # Every worker checks the run directory before the chief writes to it, so a refusal stops them all.
    shared.check(config, overwrite=overwrite)
    resuming = shared.config_path.is_file() and not overwrite
    barrier(strategy)
    run.prepare(config, overwrite=overwrite and run is shared)
    barrier(strategy)  # the chief's directory is ready (and cleared with overwrite) before anyone restores

    keras.utils.set_random_seed(config.train.seed)
    model = build_model(config, strategy)
    checkpoint = RunCheckpoint(model, run.checkpoints, keep=config.train.keep_checkpoints,
                               restore_from=shared.checkpoints)
    start = checkpoint.restore_latest() or 0
    if resuming and start:
        print(f"Resuming {shared.root} from step {start}", flush=True)
    truncate_csv(run.metrics_csv, start)
    truncate_csv(run.accuracy_csv, start)
    adapting = model.classifier_head is not None
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 0
    if adapting and start == 0 and config.train.classifier_warmup_steps > 0:
        _warm_up_classifier(model, config, data.train_a, data.test_a, data.test_b, run, strategy, verbose,
                            received)
    if start >= config.train.steps:
        print(f"{shared.root} is already at step {start} >= --steps {config.train.steps}; nothing to do",
              flush=True)
        return model, False

    writer = tf.summary.create_file_writer(str(run.logs))
    guard = DivergenceGuard(config.train.on_nan)
    stop = StopRequests(received, config.train.time_limit_minutes, start=started, strategy=strategy)
    callbacks = [
        guard,
        stop,
        TrainingLogger(run.metrics_csv, writer, config.train.log_every, config.train.steps),
        SampleWriter(
            run.samples, writer,
            to_model_range(data.samples_a).numpy(),
            to_model_range(data.samples_b).numpy(),
            config.train.sample_every,
        ),
        CheckpointSaver(checkpoint, config.train.checkpoint_every, guard),
    ]
    if adapting:
        callbacks.append(adaptation.AccuracyLogger(run.accuracy_csv, writer, config.train.eval_every,
                                                   data.test_a, data.test_b))
    callbacks += extra_callbacks
    step = start
    try:
        # Skipped (non-finite) steps do not count, so fit again until the step count is reached.
        while (step < config.train.steps and not stop.signalled and guard.diverged is None
               and not stop.time_reached):
            dataset = data.train_batches(step, source_labels=adapting)
            model.fit(dataset, epochs=1, steps_per_epoch=config.train.steps - step, callbacks=callbacks,
                      verbose=verbose, shuffle=False)
            step = checkpoint.step
    except OSError as err:
        where = err.filename or run.root
        raise UserError(f"could not write {where} ({err.strerror or err}); free disk space or choose a "
                        f"writable --output-dir (last checkpoint: {checkpoint.latest})") from None
    if guard.diverged is not None:
        at, what = guard.diverged
        raise TrainingDiverged(
            f"non-finite loss '{what}' at step {at}; training stopped and the last good checkpoint "
            f"({checkpoint.latest or 'none'}) is kept. Lower optimizer.learning_rate, or use "
            "--set train.on_nan=skip-step"
        )
    if stop.signalled:
        # A signal here, or (multi-worker) on another worker: all stop at the same step and exit alike.
        raise _interrupted(received, f"at step {checkpoint.step}; checkpoint {checkpoint.latest} saved. Run the "
                                     "same command again to resume")
    if stop.time_reached:
        print(f"Time limit of {config.train.time_limit_minutes:g} minutes reached at step {checkpoint.step}; "
              f"checkpoint {checkpoint.latest} saved", flush=True)
    return model, True


def _warm_up_classifier(model: UNIT, config: UNITConfig, train_a: DomainData, test_a: DomainData,
                        test_b: DomainData, run: RunDir, strategy: tf.distribute.Strategy, verbose: int,
                        received: list[int]) -> None:
    """Train the source-only classifier that UNIT starts from, and record its accuracies (the DA baseline).
    A signal (`received`, or on another worker) ends it at a step with TrainingInterrupted, recording nothing.
    Its progress shows as UNIT's does: a bar with `verbose`, else a line every train.log_every steps."""
    steps = config.train.classifier_warmup_steps
    print(f"Source-only classifier: {steps} steps on labelled {train_a.name} before UNIT's first step (shorten "
          "or skip: --set train.classifier_warmup_steps=N or 0; docs/domain_adaptation.md#the-source-only-warm-up)",
          flush=True)
    stop = StopRequests(received, 0, strategy=strategy)
    progress = ProgressLines("Source-only classifier", steps, every=0 if verbose else config.train.log_every,
                             after_bar=bool(verbose))
    seconds = adaptation.train_source_only(model, train_a, steps, config.data.batch_size, config.train.batch_seed,
                                           strategy, verbose=1 if verbose else 0, callbacks=[stop, progress])
    if stop.signalled:
        raise _interrupted(received, "during the source-only classifier warm-up, before UNIT's first step; "
                                     "nothing was saved. Run the same command again to start over")
    # Before the copy: the source classifier applied to target images as they are (channels matched).
    result = {"steps": steps, "seconds": round(seconds, 1), "source_accuracy": adaptation.accuracy(model, test_a, "a")}
    if test_b.labels is not None:  # dataset "da" without labelled target images: none to measure
        result["target_accuracy"] = adaptation.accuracy(model, test_b, "a")
    result["target_path_initialized"] = adaptation.copy_source_path_to_target(model)
    adaptation.write_json(run.source_only_json, result)
    target = f"{result['target_accuracy']:.4f}" if "target_accuracy" in result else "-"
    print(f"Source-only classifier: source accuracy {result['source_accuracy']:.4f}, target accuracy {target} "
          f"({seconds:.0f} s)", flush=True)
