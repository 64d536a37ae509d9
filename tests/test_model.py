"""The alternating train_step: finite losses, which variables each update touches, learning, replicas."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import synthetic_digits, tiny_config

from unit_tf.data.pipeline import DomainData, unpaired_batches
from unit_tf.evaluation import domain_errors
from unit_tf.losses import term_names
from unit_tf.model import build_model
from unit_tf.optimizers import make_optimizer


def _batch(config, n=8, seed=0):
    x_a, _ = synthetic_digits(n, 32, config.model.channels_a, seed)
    x_b, _ = synthetic_digits(n, 32, config.model.channels_b, seed + 1)
    return {"x_a": tf.constant(x_a / 127.5 - 1, tf.float32), "x_b": tf.constant(x_b / 127.5 - 1, tf.float32)}


def _fit_steps(model, batch, steps=1):
    ds = tf.data.Dataset.from_tensors(batch).repeat()
    return model.fit(ds, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False)


def _snapshot(variables):
    return [np.array(v.numpy()) for v in variables]


def _changed(before, variables):
    return [not np.array_equal(b, v.numpy()) for b, v in zip(before, variables, strict=True)]


def test_every_loss_term_is_reported_and_finite(config):
    model = build_model(config)
    history = _fit_steps(model, _batch(config), steps=2)
    names = term_names(config.loss)
    assert {"d_gan", "g_gan", "kl", "recon_l1", "cycle_kl", "cycle_l1", "d_loss", "g_loss"} <= set(names)
    assert set(names) <= set(history.history)
    for name in names:
        assert np.isfinite(history.history[name][-1]), name
    assert int(model.g_optimizer.iterations.numpy()) == 2
    assert int(model.d_optimizer.iterations.numpy()) == 2


@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_mixed_precision_keeps_float32_weights_outputs_and_losses(precision):
    config = tiny_config("mnist_usps", **{"train.precision": precision})
    model = build_model(config)
    try:
        # fp16 starts at loss scale 2^15 and skips the first steps, whose gradients overflow, halving it.
        history = _fit_steps(model, _batch(config), steps=12 if precision == "float16" else 3)
        for name in term_names(config.loss):
            assert np.isfinite(history.history[name][-1]), name
        assert {v.dtype for v in model.trainable_variables} == {"float32"}
        batch = _batch(config)
        assert model.discriminator.private_a[0].compute_dtype == precision
        assert {t.dtype for t in model.streams(batch["x_a"], batch["x_b"]).values()} == {tf.float32}
        # fp16: dynamic loss scaling found a scale that fits and updates ran; bf16: a fixed scale of 1.
        scale = float(model.g_optimizer.dynamic_scale.numpy())
        assert (1.0 <= scale < 2.0**15) if precision == "float16" else scale == 1.0
        assert int(model.g_optimizer.iterations.numpy()) >= (1 if precision == "float16" else 3)
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("frozen", ["generator", "discriminator"])
def test_each_update_changes_only_its_own_networks(config, frozen):
    """With one optimizer's learning rate at 0, only the other update's variables may move."""
    config.optimizer.weight_decay = 0.0
    model = build_model(config)
    zero = keras.optimizers.Adam(learning_rate=0.0)
    live = keras.optimizers.Adam(learning_rate=1e-3)
    if frozen == "generator":
        model.compile(d_optimizer=live, g_optimizer=zero)
    else:
        model.compile(d_optimizer=zero, g_optimizer=live)
    d_before, g_before = _snapshot(model.d_variables), _snapshot(model.g_variables)
    _fit_steps(model, _batch(config))
    d_changed, g_changed = _changed(d_before, model.d_variables), _changed(g_before, model.g_variables)
    if frozen == "generator":
        assert all(d_changed) and not any(g_changed)
    else:
        assert all(g_changed) and not any(d_changed)


def test_fifty_steps_lower_the_reconstruction_error():
    config = tiny_config(**{"model.gen_ch": 8, "model.dis_ch": 4, "data.batch_size": 16,
                            "optimizer.learning_rate": 1e-3})
    keras.utils.set_random_seed(0)
    model = build_model(config)
    x_a, y_a = synthetic_digits(256, 32, 3, seed=1)
    x_b, y_b = synthetic_digits(256, 32, 1, seed=2)
    held_out_a, _ = synthetic_digits(64, 32, 3, seed=3)
    before = domain_errors(model, held_out_a, "a")["recon_l1_a"]
    ds = unpaired_batches(DomainData("a", x_a, y_a), DomainData("b", x_b, y_b), 16, seed=0)
    model.fit(ds, epochs=1, steps_per_epoch=50, verbose=0, shuffle=False)
    after = domain_errors(model, held_out_a, "a")["recon_l1_a"]
    assert after < 0.85 * before, (before, after)


def _one_step(strategy, config, weights, batch):
    with strategy.scope():
        model = build_model(config, strategy)
        model.set_weights(weights)
        # SGD: the update IS lr x gradient, so any error in loss scaling across replicas shows up.
        model.compile(d_optimizer=keras.optimizers.SGD(0.1), g_optimizer=keras.optimizers.SGD(0.1))
    _fit_steps(model, batch)
    return model


def test_two_replicas_give_the_update_of_one_device():
    """MirroredStrategy over 2 logical CPUs at global batch 8 == one device at batch 8."""
    config = tiny_config(**{"model.latent_noise_std": 0.0})  # noise draws differ by replica count
    # Zero-mean inputs: synchronized batch norm computes E[x²] - E[x]², one device the two-pass variance;
    # on features whose mean dwarfs their spread the two differ by float32 round-off, which this test is not about.
    rng = np.random.default_rng(0)
    batch = {"x_a": tf.constant(rng.uniform(-1, 1, [8, 32, 32, 3]), tf.float32),
             "x_b": tf.constant(rng.uniform(-1, 1, [8, 32, 32, 1]), tf.float32)}
    reference = build_model(config)
    weights = reference.get_weights()
    one = _one_step(tf.distribute.OneDeviceStrategy("/cpu:0"), config, weights, batch)
    two = _one_step(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]), config, weights, batch)
    assert two.distribute_strategy.num_replicas_in_sync == 2
    moved = max(float(np.max(np.abs(a - b))) for a, b in zip(one.get_weights(), weights, strict=True))
    assert moved > 1e-3  # the step did something, so equality below is meaningful
    start = dict(zip([v.path for v in reference.weights], weights, strict=True))
    worst = 0.0
    for v1, v2 in zip(one.trainable_variables, two.trainable_variables, strict=True):
        step1, step2 = v1.numpy() - start[v1.path], v2.numpy() - start[v2.path]
        # The same update up to float32 summation order: relative to the variable's largest update.
        error = float(np.max(np.abs(step1 - step2))) / (float(np.max(np.abs(step1))) + 1e-12)
        worst = max(worst, error)
        assert error < 1e-3, (v1.path, error)
    print("worst relative update difference", worst)
    # Batch-norm moving statistics use the global batch too (synchronized batch norm).
    for v1, v2 in zip(one.non_trainable_variables, two.non_trainable_variables, strict=True):
        if "moving" in v1.path:
            np.testing.assert_allclose(v1.numpy(), v2.numpy(), rtol=1e-4, atol=2e-6, err_msg=v1.path)


def test_mirrored_training_with_latent_noise_runs(config):
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    model = build_model(config, strategy)
    history = _fit_steps(model, _batch(config), steps=2)
    assert np.isfinite(history.history["g_loss"][-1])


def test_decoupled_weight_decay_option(config):
    config.optimizer.weight_decay_mode = "decoupled"
    optimizer = make_optimizer(config.optimizer, "g")
    assert optimizer.inner_optimizer.weight_decay == pytest.approx(config.optimizer.weight_decay)
    config.optimizer.weight_decay_mode = "l2"
    assert make_optimizer(config.optimizer, "g").inner_optimizer.weight_decay is None


def test_checkpoint_restores_every_variable(config, tmp_path):
    """Weights, batch-norm moving statistics, noise RNG state and both optimizers' slots and step."""
    from unit_tf.checkpoints import RunCheckpoint

    model = build_model(config)
    _fit_steps(model, _batch(config), steps=2)
    saved = RunCheckpoint(model, tmp_path)
    saved.save()
    expected = {v.path: np.array(v.numpy()) for v in model.variables}
    expected_slots = [np.array(v.numpy()) for v in model.g_optimizer.variables + model.d_optimizer.variables]
    assert any("moving_mean" in p and np.any(v != 0) for p, v in expected.items())

    fresh = build_model(tiny_config(**{"train.seed": 7}))
    assert RunCheckpoint(fresh, tmp_path).restore_latest() == 2
    for v in fresh.variables:
        np.testing.assert_array_equal(v.numpy(), expected[v.path], err_msg=v.path)
    restored_slots = [v.numpy() for v in fresh.g_optimizer.variables + fresh.d_optimizer.variables]
    for a, b in zip(expected_slots, restored_slots, strict=True):
        np.testing.assert_array_equal(a, b)
