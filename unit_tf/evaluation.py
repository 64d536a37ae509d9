"""Evaluation of a trained run on a test split: reconstruction and cycle errors, translation grids; for
translation data sets the judge's translation success and KID (unit_tf.translation_metrics); for
domain-adaptation runs classifier accuracies, a confusion matrix and the accuracy-versus-step curve."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from unit_tf import adaptation, plots
from unit_tf.catalogue import is_image_dataset
from unit_tf.config import class_names
from unit_tf.data.pipeline import DomainData, eval_batches, to_model_range
from unit_tf.data.sources import load_eval_data
from unit_tf.images import GRID_ROWS, SAMPLE_IMAGES, make_grid, write_png
from unit_tf.model import UNIT
from unit_tf.runs import RunDir, load_trained


def _per_image_error(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    """Mean absolute difference per image in [0, 1] pixel units (images are in [-1, 1]: half the difference)."""
    return tf.reduce_mean(tf.abs(x - tf.cast(y, x.dtype)), axis=[1, 2, 3]) / 2.0


def domain_errors(model: UNIT, images: np.ndarray, source: str, batch_size: int = 256) -> dict[str, float]:
    """Mean absolute reconstruction and cycle errors of one domain's images, in [0, 1] pixel units."""
    other = "b" if source == "a" else "a"

    @tf.function
    def errors(x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        mean = model.encode(x, source)
        recon = model.decode(mean, source)
        cycle = model.translate(model.decode(mean, other), other, source)
        return _per_image_error(x, recon), _per_image_error(x, cycle)

    recon_sum = cycle_sum = 0.0
    for x in eval_batches(images, batch_size):
        recon, cycle = errors(x)
        recon_sum += float(tf.reduce_sum(recon))
        cycle_sum += float(tf.reduce_sum(cycle))
    n = len(images)
    return {f"recon_l1_{source}": recon_sum / n, f"cycle_l1_{source}": cycle_sum / n}


def interpolation_strip(model: UNIT, x_a: tf.Tensor, x_b: tf.Tensor, steps: int = 8) -> np.ndarray:
    """Latent codes on the line from E_a(x_a) to E_b(x_b), each decoded into both domains: a 2-row grid.

    The shared latent space at work: every column is one code, rendered by G_a (top) and G_b (bottom).
    """
    z_a, z_b = model.encode(x_a[None], "a"), model.encode(x_b[None], "b")
    t = tf.reshape(tf.linspace(0.0, 1.0, steps), [-1, 1, 1, 1])
    z = (1.0 - t) * tf.cast(z_a, tf.float32) + t * tf.cast(z_b, tf.float32)
    images_a, images_b = model.decode_both(tf.cast(z, z_a.dtype), False)
    return make_grid([images_a, images_b])


def evaluate(run_dir: str | Path, data_dir: str | None = None, split: str = "test",
             step: int | None = None, feature_weights: str | Path | None = None,
             judge_dir: str | Path | None = None) -> dict[str, Any]:
    """Evaluate the run's checkpoint at `step` (default: the latest): reconstruction and cycle L1 per domain;
    writes `R/eval/translations_<split>_step_<N>.png` and the latent interpolation
    `interpolation_<split>_step_<N>.png`; translation data sets add the judge's verdicts and KID
    (`feature_weights`: a local Inception-V3 weights file; `judge_dir`: the judges' cache), domain adaptation
    accuracies, a confusion matrix and the accuracy curve."""
    run = RunDir(Path(run_dir))
    model, config, step = load_trained(run.root, step)
    data = load_eval_data(config, split, data_dir)
    a, b = data.a, data.b
    result: dict[str, Any] = {"run_dir": str(run.root), "dataset": config.data.dataset, "split": split,
                              "step": step, "num_images_a": len(a.images), "num_images_b": len(b.images)}
    result.update(domain_errors(model, a.images, "a"))
    result.update(domain_errors(model, b.images, "b"))
    streams = model.streams(to_model_range(a.images[:SAMPLE_IMAGES]), to_model_range(b.images[:SAMPLE_IMAGES]))
    grid = write_png(make_grid([streams[name] for name in GRID_ROWS]),
                     run.eval / f"translations_{split}_step_{step}.png")
    result["translation_grid"] = str(grid)
    strip = interpolation_strip(model, to_model_range(a.images[0]), to_model_range(b.images[0]))
    result["interpolation"] = str(write_png(strip, run.eval / f"interpolation_{split}_step_{step}.png"))
    if is_image_dataset(config.data.dataset):
        from unit_tf.translation_metrics import TranslationMetrics

        metrics = TranslationMetrics(data.train_a, data.train_b, a.images, b.images, feature_weights, judge_dir)
        result.update(metrics(model))
    if model.classifier_head is not None:
        result.update(adaptation_report(model, run, a, b, split, step))
    return result


def evaluate_export(path: str | Path, data_dir: str | None = None, split: str = "test",
                    feature_weights: str | Path | None = None, judge_dir: str | Path | None = None,
                    batch_size: int = 64, dataset: str | None = None) -> dict[str, Any]:
    """Measure an export (a shipped model) through its signatures on the data of the config it carries:
    reconstruction and cycle L1, the judge's verdicts and KID (translation data), source and target accuracy
    (domain adaptation) — the keys `evaluate` reports for the run, without grids or plots. `dataset` replaces
    the config's (the same data where it lives on this machine, e.g. folder:ROOT)."""
    from unit_tf.config import apply_overrides, validate
    from unit_tf.exported import ExportedModel

    model = ExportedModel.load(path)
    config = model.config
    if dataset:
        apply_overrides(config, {"data.dataset": dataset})
        validate(config)
    data = load_eval_data(config, split, data_dir)
    result: dict[str, Any] = {"saved_model": str(model.path), "dataset": config.data.dataset, "split": split,
                              "num_images_a": len(data.a.images), "num_images_b": len(data.b.images)}
    for source, other, images in (("a", "b", data.a.images), ("b", "a", data.b.images)):
        x = images.astype(np.float32) / 255.0
        recon = model.signatures[f"reconstruct_{source}"]
        there, back = model.signatures[f"{source}_to_{other}"], model.signatures[f"{other}_to_{source}"]
        recon_sum = cycle_sum = 0.0
        for i in range(0, len(x), batch_size):
            batch = tf.constant(x[i:i + batch_size])
            recon_sum += float(tf.reduce_sum(tf.reduce_mean(tf.abs(batch - recon(images=batch)["images"]), [1, 2, 3])))
            cycle = back(images=there(images=batch)["images"])["images"]
            cycle_sum += float(tf.reduce_sum(tf.reduce_mean(tf.abs(batch - cycle), [1, 2, 3])))
        result[f"recon_l1_{source}"], result[f"cycle_l1_{source}"] = recon_sum / len(x), cycle_sum / len(x)
    if is_image_dataset(config.data.dataset):
        from unit_tf.translation_metrics import TranslationMetrics

        metrics = TranslationMetrics(data.train_a, data.train_b, data.a.images, data.b.images, feature_weights,
                                     judge_dir)
        result.update(metrics.measure(model.translate_uint8))
    if "classify_b" in model.signatures:
        result["source_accuracy"] = float(np.mean(model.predict_classes(data.a.images, "a") == data.a.labels))
        result["target_accuracy"] = float(np.mean(model.predict_classes(data.b.images, "b") == data.b.labels))
    return result


def adaptation_report(model: UNIT, run: RunDir, a: DomainData, b: DomainData, split: str,
                      step: int) -> dict[str, Any]:
    """Source (D_a) and target (D_b) accuracy, overall and per class (by name), target confusion matrix and
    accuracy-vs-step plot PNGs; without target labels (dataset "da" without labelled target images) the
    source's only."""
    names = class_names(model.unit_config)
    source_pred = adaptation.predict_classes(model, a.images, "a")
    result: dict[str, Any] = {"class_names": names, "source_accuracy": float(np.mean(source_pred == a.labels)),
                              "source_accuracy_per_class": adaptation.per_class_accuracy(a.labels, source_pred, names)}
    if b.labels is not None:
        target_pred = adaptation.predict_classes(model, b.images, "b")  # the model's prediction, as exported
        result["target_accuracy"] = float(np.mean(target_pred == b.labels))
        if model.unit_config.loss.translated_jitter:  # D_b learnt from colour variants: both predictions
            own = model.test_time_jitter("b")
            for name, averaged in (("plain", False), ("jitter_mean", True)):
                result[f"target_accuracy_{name}"] = (result["target_accuracy"] if averaged == own
                                                     else adaptation.accuracy(model, b, "b", test_time_jitter=averaged))
        result["target_accuracy_per_class"] = adaptation.per_class_accuracy(b.labels, target_pred, names)
        matrix = adaptation.confusion_matrix(b.labels, target_pred, len(names))
        title = f"{a.name} -> {b.name}: target ({b.name}) {split}, step {step}"
        result["confusion_matrix"] = str(plots.confusion_matrix_png(
            matrix, run.eval / f"confusion_target_{split}_step_{step}.png", title, names))
    history = adaptation.read_accuracy_csv(run.accuracy_csv)
    baseline = None
    if run.source_only_json.is_file():
        baseline = adaptation.read_json(run.source_only_json).get("target_accuracy")
        if baseline is not None:
            result["source_only_target_accuracy"] = baseline
    if history:
        steps = [row["step"] for row in history]
        curves = {f"source ({a.name})": [row["source_accuracy"] for row in history]}
        if all("target_accuracy" in row for row in history):
            curves = {f"target ({b.name})": [row["target_accuracy"] for row in history], **curves}
        result["accuracy_plot"] = str(plots.accuracy_curve_png(
            steps, curves, run.eval / "accuracy_vs_step.png",
            f"{a.name} -> {b.name}: test accuracy while training", baseline))
    return result
