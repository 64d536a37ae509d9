"""Domain adaptation around the UNIT model: classifier accuracy, the source-only model, accuracy logging.

The classifier is the head on the shared high layers of D (see `UNIT.classify`). Source images are
classified through D_a, target images through D_b. Only source labels are ever used for training; target
test labels are used to REPORT accuracy (logged while training, never used to pick a checkpoint).
"""

from __future__ import annotations

import csv
import json
import sys
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from unit_tf import losses
from unit_tf.callbacks import StopRequests
from unit_tf.data.pipeline import DomainData, eval_batches, match_channels, source_dataset
from unit_tf.distribute import MultiWorkerFit, fit_outputs
from unit_tf.files import write_text
from unit_tf.model import UNIT
from unit_tf.optimizers import make_optimizer

# One traced predictor per (model, domain), kept while the model lives: evaluating every few hundred steps
# must not retrace. The closure holds the model weakly, so the cache never keeps a model alive. No
# reduce_retracing: a relaxed (unknown) channel count would skip match_channels (target images through D_a).
_PREDICTORS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _predictor(model: UNIT, domain: str, test_time_jitter: bool) -> Callable[[tf.Tensor], tf.Tensor]:
    per_model = _PREDICTORS.setdefault(model, {})
    if (domain, test_time_jitter) not in per_model:
        channels = model.unit_config.model.channels_a if domain == "a" else model.unit_config.model.channels_b
        ref = weakref.ref(model)

        @tf.function
        def predict(x: tf.Tensor) -> tf.Tensor:
            probabilities = ref().class_probabilities(match_channels(x, channels), domain, test_time_jitter)
            return tf.argmax(probabilities, -1, output_type=tf.int32)

        per_model[domain, test_time_jitter] = predict
    return per_model[domain, test_time_jitter]


def predict_classes(model: UNIT, images: np.ndarray, domain: str, batch_size: int = 500,
                    test_time_jitter: bool | None = None) -> np.ndarray:
    """Predicted class of each uint8 image through D_domain + the classifier head (inference mode); by default
    the model's own prediction (`UNIT.test_time_jitter`), True / False: with / without the colour average."""
    if test_time_jitter is None:
        test_time_jitter = model.test_time_jitter(domain)
    predict = _predictor(model, domain, test_time_jitter)
    return np.concatenate([predict(x).numpy() for x in eval_batches(images, batch_size)])


def accuracy(model: UNIT, data: DomainData, domain: str, test_time_jitter: bool | None = None) -> float:
    """The fraction of `data`'s (labelled) images classified as their label through D_domain (`predict_classes`)."""
    if data.labels is None:
        raise ValueError(f"{data.name} has no labels to measure an accuracy on")
    return float(np.mean(predict_classes(model, data.images, domain, test_time_jitter=test_time_jitter)
                         == data.labels))


def per_class_accuracy(labels: np.ndarray, predictions: np.ndarray, names: list[str]) -> dict[str, float]:
    """Accuracy of each class (by name) that has images."""
    return {name: float(np.mean(predictions[labels == k] == k)) for k, name in enumerate(names) if (labels == k).any()}


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts [true class, predicted class]."""
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (labels.astype(np.int64), predictions.astype(np.int64)), 1)
    return matrix


class SourceOnlyTrainer(MultiWorkerFit, keras.Model):
    """Trains D_a's layers under the real/fake head plus the classifier head on labelled source images.

    It holds the UNIT model's own layer objects, so training it IS initializing UNIT's classifier path
    (official DA classifier, same input, same layers): the source-only baseline of every DA table.
    """

    def __init__(self, unit: UNIT, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.unit = unit
        layers = unit.discriminators.classifier_layers("a")  # D_a's trunk and the head, not the real/fake head
        self.classifier_variables = [v for layer in layers for v in layer.trainable_variables]
        self.loss_tracker = keras.metrics.Mean(name="source_only_loss")
        self.accuracy_tracker = keras.metrics.Mean(name="source_only_batch_accuracy")

    def call(self, inputs: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        """Source digit logits."""
        return self.unit.classify(inputs["x_a"], "a", training=training)

    def compile(self, optimizer: keras.optimizers.Optimizer, **kwargs: Any) -> None:
        super().compile(optimizer=optimizer, **kwargs)
        optimizer.build(self.classifier_variables)
        self.built = True  # the UNIT model's layers are built already

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        return [self.loss_tracker, self.accuracy_tracker]

    def train_step(self, data: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            logits = self.unit.classify(data["x_a"], "a", training=True)
            loss = self.unit.unit_config.loss.classifier * losses.classifier_loss(data["y_a"], logits)
            loss += self.unit.weight_penalty(self.classifier_variables)
            scaled = self.optimizer.scale_loss(loss / tf.cast(replicas, loss.dtype))
        grads = tape.gradient(scaled, self.classifier_variables)
        self.optimizer.apply_gradients(zip(grads, self.classifier_variables, strict=True))
        hits = tf.equal(tf.argmax(logits, -1, output_type=tf.int32), tf.cast(data["y_a"], tf.int32))
        self.loss_tracker.update_state(loss)
        self.accuracy_tracker.update_state(tf.reduce_mean(tf.cast(hits, tf.float32)))
        return fit_outputs({m.name: m.result() for m in self.metrics})


def copy_source_path_to_target(unit: UNIT) -> bool:
    """Start D_b's private layers from D_a's, so the target path begins as the source-only classifier: where the
    domains' channel counts differ, the first conv's kernel is converted so that D_b(x) = D_a(match_channels(x))
    — the source-only classifier as the target accuracy measures it (RGB -> gray: each colour channel gets the
    luminance weight times the gray kernel; gray -> RGB: the gray kernel is the sum of the colour kernels).
    Returns whether it copied (False where the private layers differ in more than that)."""
    disc = unit.discriminators.scales[0]
    pairs = list(zip(disc.private_layers("a"), disc.private_layers("b"), strict=True))
    vars_a = [v for layer, _ in pairs for v in layer.variables]
    vars_b = [v for _, layer in pairs for v in layer.variables]
    if len(vars_a) != len(vars_b):
        return False
    values = [_for_channels(src, dst.shape) for src, dst in zip(vars_a, vars_b, strict=True)]
    if any(value is None for value in values):
        return False
    for value, dst in zip(values, vars_b, strict=True):
        dst.assign(value)
    return True


def _for_channels(source: tf.Variable, shape: tf.TensorShape) -> tf.Tensor | None:
    """source's value for a variable of `shape`: itself where the shapes match, a conv kernel [kh, kw, in, out]
    converted between 1 and 3 input channels (as match_channels converts images), else None."""
    if source.shape == shape:
        return tf.convert_to_tensor(source)
    if len(shape) != 4 or source.shape[:2] != shape[:2] or source.shape[3] != shape[3]:
        return None
    have, want = source.shape[2], shape[2]
    if (have, want) == (1, 3):  # D_b sees RGB, the source-only path saw its luminance
        luminance = tf.image.rgb_to_grayscale(tf.eye(3, dtype=source.dtype))  # [3, 1]: each channel's weight
        return tf.convert_to_tensor(source) * tf.reshape(luminance, [1, 1, 3, 1])
    if (have, want) == (3, 1):  # D_b sees gray, the source-only path saw it repeated into RGB
        return tf.reduce_sum(tf.convert_to_tensor(source), axis=2, keepdims=True)
    return None


def make_source_only_trainer(unit: UNIT, strategy: tf.distribute.Strategy | None = None) -> SourceOnlyTrainer:
    """A compiled SourceOnlyTrainer on `unit`'s layers, with its own optimizer (the config's settings)."""
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        trainer = SourceOnlyTrainer(unit, name="source_only")
        trainer.compile(optimizer=make_optimizer(unit.unit_config.optimizer, "source_only_optimizer",
                                                 unit.unit_config.train.precision, unit.unit_config.model.fast_paths))
    return trainer


def train_source_only(unit: UNIT, train_a: DomainData, steps: int, batch_size: int, seed: int,
                      strategy: tf.distribute.Strategy | None = None, verbose: int = 0,
                      trainer: SourceOnlyTrainer | None = None,
                      callbacks: list[keras.callbacks.Callback] | None = None) -> float:
    """Train the classifier path on labelled source images for `steps`; returns the seconds it took.

    Pass the same `trainer` again to continue (its optimizer state included); `callbacks` go to its fit (a
    stop request ends it early)."""
    trainer = trainer or make_source_only_trainer(unit, strategy)
    start = time.time()
    trainer.fit(source_dataset(train_a, batch_size, seed), epochs=1, steps_per_epoch=steps, verbose=verbose,
                shuffle=False, callbacks=callbacks)
    return time.time() - start


def train_source_only_for(unit: UNIT, train_a: DomainData, test_a: DomainData, test_b: DomainData,
                          minutes: float, batch_size: int, seed: int,
                          eval_every: int = 1000) -> list[dict[str, float]]:
    """The source-only classifier trained for `minutes` of wall-clock time (the whole budget UNIT gets: the
    second DA baseline), one trainer throughout. Returns its test accuracies (source through D_a, target as
    it is, through D_a) every `eval_every` steps and at the deadline, each also printed to stderr."""
    trainer = make_source_only_trainer(unit)
    deadline = StopRequests([], minutes)  # ends the round that reaches the deadline at that step
    curve: list[dict[str, float]] = []
    while not deadline.time_reached:
        done = int(trainer.optimizer.iterations.numpy())
        # Each round draws a new shuffle seed; Adam's moments carry on.
        train_source_only(unit, train_a, eval_every, batch_size, seed + done, trainer=trainer, callbacks=[deadline])
        curve.append({"step": int(trainer.optimizer.iterations.numpy()),
                      "source_accuracy": round(accuracy(unit, test_a, "a"), 4),
                      "target_accuracy": round(accuracy(unit, test_b, "a"), 4)})
        if unit.unit_config.model.test_time_jitter:  # the same colour average UNIT's D_b prediction takes
            curve[-1]["target_accuracy_jitter_mean"] = round(accuracy(unit, test_b, "a", test_time_jitter=True), 4)
        print(f"source-only step {curve[-1]['step']}: source {curve[-1]['source_accuracy']}, "
              f"target {curve[-1]['target_accuracy']}", file=sys.stderr, flush=True)
    return curve


def evaluate_accuracies(unit: UNIT, test_a: DomainData, test_b: DomainData) -> dict[str, float]:
    """Source test accuracy through D_a, target test accuracy through D_b (when the target test images have
    labels: dataset "da" without labelled target images has none), both in one pass (no colour average)."""
    values = {"source_accuracy": accuracy(unit, test_a, "a", test_time_jitter=False)}
    if test_b.labels is not None:
        values["target_accuracy"] = accuracy(unit, test_b, "b", test_time_jitter=False)
    return values


def write_json(path: Path, values: dict[str, Any]) -> None:
    write_text(path, json.dumps(values, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


ACCURACY_COLUMNS = ("step", "source_accuracy", "target_accuracy", "target_accuracy_jitter_mean")


class AccuracyLogger(keras.callbacks.Callback):
    """Every `every` steps and at the end: classifier accuracy on both TEST splits -> accuracy.csv, TensorBoard.
    The final row adds the model's own (colour-averaged) target accuracy where it differs (`log`).

    For monitoring and plots only; nothing reads these numbers back to choose a checkpoint.
    """

    def __init__(self, csv_path: Path, writer: tf.summary.SummaryWriter, every: int,
                 test_a: DomainData, test_b: DomainData) -> None:
        super().__init__()
        self.csv_path = Path(csv_path)
        self.writer = writer
        self.every = every
        self.test_a, self.test_b = test_a, test_b
        self.last_logged = -1
        self.last_values: dict[str, float] = {}

    def log(self, step: int, final: bool = False) -> dict[str, float]:
        """One row of one-pass accuracies; `final` adds the model's own colour-averaged target accuracy where that
        is its prediction (2 or 48 passes per image: too slow for every few hundred steps). A step already logged
        keeps its values and its row gains the column."""
        again = step == self.last_logged
        values = dict(self.last_values) if again else evaluate_accuracies(self.model, self.test_a, self.test_b)
        if final and self._averaged():
            values["target_accuracy_jitter_mean"] = accuracy(self.model, self.test_b, "b", test_time_jitter=True)
        lines = self.csv_path.read_text().splitlines() if self.csv_path.is_file() else []
        if again and lines:
            lines.pop()  # replaced by the row with the final column
        row = [str(step), *(f"{values[k]:.5f}" if k in values else "" for k in ACCURACY_COLUMNS[1:])]
        lines = [",".join(ACCURACY_COLUMNS), *lines[1:]]  # (a resumed older run's header gains the new column)
        self.csv_path.write_text("\n".join([*lines, ",".join(row)]) + "\n")
        with self.writer.as_default(step=step):
            for name, value in values.items():
                tf.summary.scalar(f"accuracy/{name}", value)
        target = f"{values['target_accuracy']:.4f}" if "target_accuracy" in values else "- (no labelled target images)"
        if "target_accuracy_jitter_mean" in values:
            target += f" ({values['target_accuracy_jitter_mean']:.4f} averaged over colour variants)"
        print(f"step {step}: source accuracy {values['source_accuracy']:.4f}, target accuracy {target}", flush=True)
        self.last_logged, self.last_values = step, values
        return values

    def _averaged(self) -> bool:
        """Whether the model's target prediction is the colour average, measurable on labelled target images."""
        return self.model.test_time_jitter("b") and self.test_b.labels is not None

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self.every and self.model.step % self.every == 0:
            self.log(self.model.step)

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.model.step != self.last_logged or self._averaged():
            self.log(self.model.step, final=True)


def read_accuracy_csv(path: Path) -> list[dict[str, float]]:
    """accuracy.csv's rows; a value not measured (no labelled target images) is left out of its row."""
    if not Path(path).is_file():
        return []
    with Path(path).open(newline="") as f:
        return [{k: float(v) for k, v in row.items() if v} for row in csv.DictReader(f)]
