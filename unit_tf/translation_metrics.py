"""How well a run translates between two image domains, on the test images: the judge's verdicts (translation
success next to the identity floor) and KID between translations and the real target images.

Keys (all over the test split; a2b = translations of A's test images compared with B's, b2a the reverse):
    judge_accuracy                the judge's accuracy on the real test images of both domains
    translation_success_a2b/_b2a  fraction of translations the judge assigns to the target domain
    identity_success_a2b/_b2a     the same fraction for the untranslated images (what doing nothing scores)
    kid_a2b, kid_a2b_std, ...     KID (mean, std over subsets) on ImageNet Inception-V3 features; where those
                                  weights are unavailable kid_judge_a2b, ... on the judge's features instead
    kid_identity_a2b, ...         KID of the untranslated images (kid_judge_identity_* with judge features)
Translations are rounded to 8-bit pixels first, as a saved image would be.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from unit_tf import judge as judges
from unit_tf import kid as kid_metric

if TYPE_CHECKING:
    from unit_tf.model import UNIT


#: Per model: its traced translation function per (source, target), kept while the model lives.
_TRANSLATORS: weakref.WeakKeyDictionary[Any, dict[tuple[str, str], Any]] = weakref.WeakKeyDictionary()


def translator(model: UNIT, source: str, target: str) -> Any:
    """The model's tf.function translating `source` into `target` (float32, through the latent mean), traced
    once per model and direction: calling it after a checkpoint restore reads the restored weights without
    retracing. The function holds the model weakly, so the cache never keeps a model alive."""
    import tensorflow as tf

    per_model = _TRANSLATORS.setdefault(model, {})
    if (source, target) not in per_model:
        ref = weakref.ref(model)

        @tf.function(reduce_retracing=True)
        def run(x: tf.Tensor) -> tf.Tensor:
            return tf.cast(ref().translate(x, source, target, training=False), tf.float32)  # type: ignore[union-attr]

        per_model[(source, target)] = run
    return per_model[(source, target)]


def translate_uint8(model: UNIT, images: np.ndarray, source: str, target: str, batch_size: int = 64) -> np.ndarray:
    """uint8 images of `source` translated into `target` through the latent mean, as uint8."""
    from unit_tf.data.pipeline import to_model_range

    run = translator(model, source, target)
    out = [run(to_model_range(images[i:i + batch_size])).numpy() for i in range(0, len(images), batch_size)]
    return np.clip(np.round((np.concatenate(out) + 1.0) * 127.5), 0, 255).astype(np.uint8)


class TranslationMetrics:
    """The judge, the feature extractor and the real test images' features, prepared once; calling it on a
    model measures that model (a benchmark measures many checkpoints with one instance)."""

    def __init__(self, train_a: np.ndarray, train_b: np.ndarray, test_a: np.ndarray, test_b: np.ndarray,
                 feature_weights: str | Path | None = None, judge_dir: str | Path | None = None,
                 recipe: judges.JudgeRecipe | None = None) -> None:
        self.test_a, self.test_b = test_a, test_b
        self.judge = judges.load_or_train(train_a, train_b, recipe or judges.JudgeRecipe(), judge_dir)
        inception = kid_metric.inception_features(feature_weights)
        self.prefix = "kid" if inception is not None else "kid_judge"
        self.features = inception if inception is not None else self.judge.features
        self.real_features = {"a": self.features(test_a), "b": self.features(test_b)}
        p_a, p_b = self.judge.prob_b(test_a), self.judge.prob_b(test_b)
        self.fixed: dict[str, Any] = {
            "judge_accuracy": float((np.sum(p_a < 0.5) + np.sum(p_b >= 0.5)) / (len(p_a) + len(p_b))),
            "identity_success_a2b": float(np.mean(p_a >= 0.5)),
            "identity_success_b2a": float(np.mean(p_b < 0.5)),
            "judge": str(self.judge.path) if self.judge.path else None,
            "kid_features": "inception_v3" if inception is not None else "judge",
        }
        for name, source, target in (("a2b", "a", "b"), ("b2a", "b", "a")):
            mean, std = kid_metric.kid(self.real_features[source], self.real_features[target])
            self.fixed[f"{self.prefix}_identity_{name}"] = mean
            self.fixed[f"{self.prefix}_identity_{name}_std"] = std

    def __call__(self, model: UNIT) -> dict[str, Any]:
        return self.measure(lambda images, source, target: translate_uint8(model, images, source, target))

    def measure(self, translate: Callable[[np.ndarray, str, str], np.ndarray]) -> dict[str, Any]:
        """The metrics of a translation function (uint8 images, source, target -> uint8 translations)."""
        result = dict(self.fixed)
        for name, source, target, images in (("a2b", "a", "b", self.test_a), ("b2a", "b", "a", self.test_b)):
            translated = translate(images, source, target)
            p_b = self.judge.prob_b(translated)
            result[f"translation_success_{name}"] = float(np.mean(p_b >= 0.5 if target == "b" else p_b < 0.5))
            mean, std = kid_metric.kid(self.features(translated), self.real_features[target])
            result[f"{self.prefix}_{name}"], result[f"{self.prefix}_{name}_std"] = mean, std
        return result
