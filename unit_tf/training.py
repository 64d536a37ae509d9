"""A training run end to end: run directory, data, model under the strategy, callbacks, `model.fit`."""

from __future__ import annotations

import sys
from pathlib import Path

import keras
import tensorflow as tf

from unit_tf.callbacks import CheckpointSaver, SampleWriter, TrainingLogger, truncate_csv
from unit_tf.checkpoints import RunCheckpoint
from unit_tf.config import UNITConfig
from unit_tf.data.pipeline import load_pair, to_model_range, train_dataset
from unit_tf.distribute import make_strategy
from unit_tf.errors import UserError
from unit_tf.model import UNIT, build_model
from unit_tf.runs import RunDir

SAMPLE_IMAGES = 8  # images per domain in a sample grid


def _shuffle_seed(seed: int, start_step: int) -> int:
    """A resumed run reshuffles: its data order depends on the seed AND the step it resumes from."""
    return (seed * 1_000_003 + start_step) % (2**31 - 1)


def train(config: UNITConfig, output_dir: str | Path, verbose: int | None = None,
          export_dir: str | Path | None = None) -> UNIT:
    """Train (or resume) the run in `output_dir` up to `config.train.steps`; returns the model.

    With `export_dir`, a run that trained exports a SavedModel to `export_dir/<version>/` at the end.
    """
    run = RunDir(Path(output_dir))
    strategy = make_strategy(config.train.strategy)
    replicas = strategy.num_replicas_in_sync
    if config.data.batch_size % replicas:
        raise UserError(f"--batch-size {config.data.batch_size} is not divisible by the {replicas} replicas; "
                        f"use a multiple of {replicas}")
    train_a, train_b = load_pair(config.data.dataset, "train", config.data.data_dir, config.model.image_size)
    test_a, test_b = load_pair(config.data.dataset, "test", config.data.data_dir, config.model.image_size)
    resuming = run.prepare(config)

    keras.utils.set_random_seed(config.train.seed)
    model = build_model(config, strategy)
    checkpoint = RunCheckpoint(model, run.checkpoints, keep=config.train.keep_checkpoints)
    start = checkpoint.restore_latest() or 0
    if resuming and start:
        print(f"Resuming {run.root} from step {start}", flush=True)
    truncate_csv(run.metrics_csv, start)
    remaining = config.train.steps - start
    if remaining <= 0:
        print(f"{run.root} is already at step {start} >= --steps {config.train.steps}; nothing to do",
              flush=True)
        return model

    dataset = train_dataset(train_a, train_b, config.data.batch_size, _shuffle_seed(config.train.seed, start))
    writer = tf.summary.create_file_writer(str(run.logs))
    callbacks = [
        TrainingLogger(run.metrics_csv, writer, config.train.log_every, config.train.steps),
        SampleWriter(
            run.samples, writer,
            to_model_range(test_a.images[:SAMPLE_IMAGES]).numpy(),
            to_model_range(test_b.images[:SAMPLE_IMAGES]).numpy(),
            config.train.sample_every,
        ),
        CheckpointSaver(checkpoint, config.train.checkpoint_every),
    ]
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 0
    model.fit(dataset, epochs=1, steps_per_epoch=remaining, callbacks=callbacks, verbose=verbose,
              shuffle=False)
    if export_dir is not None:
        from unit_tf.export import export_model

        print(f"Exported SavedModel to {export_model(model, export_dir)}", flush=True)
    return model


def load_trained(run_dir: str | Path) -> tuple[UNIT, UNITConfig, int]:
    """The model of a run directory with its latest checkpoint's weights, its config and step."""
    run = RunDir(Path(run_dir))
    config = run.read_config()
    model = build_model(config)
    step = RunCheckpoint(model, run.checkpoints).restore_latest(weights_only=True)
    if step is None:
        raise UserError(f"{run.root} has no checkpoint yet; train it first (python train.py --output-dir "
                        f"{run.root} ...)")
    return model, config, step
