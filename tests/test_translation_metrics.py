"""The photo metrics: KID against a direct implementation, the domain judge (learns, deterministic, cached), and
the translation report's keys and floors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from helpers import photo_like, tiny_translation_config

from unit_tf import judge as judges
from unit_tf import kid as kid_metric
from unit_tf.translation_metrics import TranslationMetrics, translate_uint8, translator

SIZE = 16
RECIPE = judges.JudgeRecipe(width=4, epochs=12, batch_size=8)


def direct_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """The unbiased MMD² written out term by term (Bińkowski et al. 2018, eq. 4) with k(a, b) = (a·b/d + 1)^3."""
    d = x.shape[1]

    def k(a: np.ndarray, b: np.ndarray) -> float:
        return (float(np.dot(a, b)) / d + 1.0) ** 3

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(n), 2)) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_mmd2_matches_the_direct_formula():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(12, 5)), rng.normal(0.5, 1.2, size=(9, 5))
    assert kid_metric.polynomial_mmd2(x, y) == pytest.approx(direct_mmd2(x, y), rel=1e-10)


def test_kid_averages_the_direct_estimate_over_seeded_subsets():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(30, 4)), rng.normal(0.3, 1.0, size=(25, 4))
    mean, std = kid_metric.kid(x, y, subsets=5, subset_size=10, seed=3)
    draw = np.random.default_rng(3)
    values = [direct_mmd2(x[draw.choice(30, 10, replace=False)], y[draw.choice(25, 10, replace=False)])
              for _ in range(5)]
    assert mean == pytest.approx(np.mean(values), rel=1e-10) and std == pytest.approx(np.std(values), rel=1e-9)


def test_kid_is_near_zero_for_one_distribution_and_grows_with_the_shift():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(400, 8)), rng.normal(size=(400, 8))
    same = kid_metric.kid(x, y)[0]
    near, far = kid_metric.kid(x, y + 0.3)[0], kid_metric.kid(x, y + 1.0)[0]
    assert abs(same) < near < far


@pytest.fixture(scope="module")
def domains():
    return (photo_like(48, SIZE, 0, True), photo_like(48, SIZE, 1, False), photo_like(16, SIZE, 2, True),
            photo_like(16, SIZE, 3, False))


def test_judge_learns_is_deterministic_and_cached(domains, tmp_path):
    train_a, train_b, test_a, test_b = domains
    first = judges.load_or_train(train_a, train_b, RECIPE, tmp_path / "one", verbose=False)
    assert first.path.is_file() and first.path.with_suffix(".json").is_file()
    assert np.mean(first.prob_b(test_a) < 0.5) > 0.9 and np.mean(first.prob_b(test_b) >= 0.5) > 0.9
    again = judges.load_or_train(train_a, train_b, RECIPE, tmp_path / "two", verbose=False)  # trained anew
    for w1, w2 in zip(first.model.get_weights(), again.model.get_weights(), strict=True):
        np.testing.assert_array_equal(w1, w2)
    cached = judges.load_or_train(train_a, train_b, RECIPE, tmp_path / "one", verbose=False)
    assert cached.path == first.path
    np.testing.assert_array_equal(cached.prob_b(test_b), first.prob_b(test_b))
    assert cached.features(test_a).shape == (16, RECIPE.width * 2)  # two blocks at 16 px
    other = judges.load_or_train(train_a, train_b[:40], RECIPE, tmp_path / "one", verbose=False)
    assert other.path != first.path  # other training images: another judge


class _Swap:
    """A stand-in model whose "translation" swaps in the other domain's images: a perfect translator."""

    def __init__(self, test_a: np.ndarray, test_b: np.ndarray) -> None:
        self.images = {"a": test_a, "b": test_b}

    def translate(self, x, source, target, training=False):  # noqa: ANN001, ANN201
        import tensorflow as tf

        other = self.images[target][: int(x.shape[0])]
        return tf.cast(other, tf.float32) / 127.5 - 1.0


class _Identity:
    def translate(self, x, source, target, training=False):  # noqa: ANN001, ANN201
        return x


def test_report_scores_the_identity_floor_and_a_perfect_translator(domains, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("UNIT_OFFLINE", "1")
    train_a, train_b, test_a, test_b = domains
    metrics = TranslationMetrics(train_a, train_b, test_a, test_b, judge_dir=tmp_path, recipe=RECIPE)
    assert "kid_judge" in capsys.readouterr().err  # said once, on stderr: no Inception weights offline
    identity = metrics(_Identity())
    assert not any(key.startswith("kid_a2b") for key in identity)  # judge features are never called kid_*
    assert identity["translation_success_a2b"] == identity["identity_success_a2b"] < 0.1
    assert identity["kid_judge_a2b"] == pytest.approx(identity["kid_judge_identity_a2b"], abs=1e-6)
    perfect = metrics(_Swap(test_a, test_b))
    assert perfect["translation_success_a2b"] > 0.9 and perfect["translation_success_b2a"] > 0.9
    assert abs(perfect["kid_judge_a2b"]) < identity["kid_judge_a2b"]
    assert perfect["judge_accuracy"] == identity["judge_accuracy"] > 0.9
    assert perfect["kid_features"] == "judge"


def test_missing_feature_weights_file_falls_back_with_one_line(tmp_path, capsys):
    assert kid_metric.inception_features(tmp_path / "nope.h5") is None
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope.h5" in err[0] and "kid_judge" in err[0]


def test_inception_features_from_a_local_weights_file(tmp_path, domains):
    import keras
    import tensorflow as tf

    # Random weights in the layout of Keras' ImageNet file: what --feature-weights reads (no download).
    net = keras.applications.InceptionV3(include_top=False, pooling="avg", weights=None, input_shape=(299, 299, 3))
    path = tmp_path / "inception.weights.h5"
    net.save_weights(path)
    features = kid_metric.inception_features(path)
    assert features is not None
    out = features(domains[2][:3])
    assert out.shape == (3, 2048) and np.all(np.isfinite(out))
    expected = net(tf.image.resize(domains[2][:3].astype(np.float32) / 127.5 - 1.0, (299, 299)), training=False)
    np.testing.assert_allclose(out, expected.numpy(), rtol=1e-4, atol=1e-5)  # [-1, 1] at 299 px, same weights


def test_measuring_checkpoints_traces_each_direction_once(domains, tmp_path, monkeypatch):
    """What benchmarks/photo_translation.py's measure_checkpoints does: one TranslationMetrics, a checkpoint
    restored into the same model before each measurement; the translation is traced once per direction and
    each measurement reads the restored weights."""
    import tensorflow as tf

    from unit_tf.checkpoints import RunCheckpoint
    from unit_tf.data.pipeline import to_model_range
    from unit_tf.model import build_model

    monkeypatch.setenv("UNIT_OFFLINE", "1")
    train_a, train_b, test_a, test_b = domains
    model = build_model(tiny_translation_config())
    checkpoints = RunCheckpoint(model, tmp_path / "checkpoints", keep=0)
    for step in (1, 2):  # two checkpoints with different weights
        tf.random.set_seed(step)
        for v in model.trainable_variables:
            v.assign(tf.random.normal(v.shape, stddev=0.2, dtype=v.dtype))
        model.g_optimizer.iterations.assign(step)
        checkpoints.save()
    metrics = TranslationMetrics(train_a, train_b, test_a, test_b, judge_dir=tmp_path / "judge", recipe=RECIPE)
    outputs = []
    for step in checkpoints.steps():
        checkpoints.restore_step(step, weights_only=True)
        metrics(model)
        outputs.append(translate_uint8(model, test_a, "a", "b"))
        expected = model.translate(to_model_range(test_a), "a", "b", training=False).numpy()
        np.testing.assert_array_equal(outputs[-1], np.clip(np.round((expected + 1.0) * 127.5), 0, 255)
                                      .astype(np.uint8))  # the restored weights, not the first trace's
    assert not np.array_equal(outputs[0], outputs[1])
    for source, target in (("a", "b"), ("b", "a")):
        run = translator(model, source, target)
        assert run is translator(model, source, target)
        assert run.experimental_get_tracing_count() == 1, (source, target)
