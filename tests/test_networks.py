"""Shapes, weight sharing and serialization of the six networks."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import tiny_config

from unit_tf.errors import UserError
from unit_tf.layers import ConvBlock, CoordinateChannels, dropout
from unit_tf.model import UNIT, build_model
from unit_tf.networks import CoupledNetwork


def test_output_shapes_and_ranges(config):
    model = build_model(config)
    x_a = tf.random.uniform([3, 32, 32, 3], -1, 1)
    x_b = tf.random.uniform([5, 32, 32, 1], -1, 1)
    out = model({"x_a": x_a, "x_b": x_b})
    assert out["a_to_b"].shape == (3, 32, 32, 1)
    assert out["b_to_a"].shape == (5, 32, 32, 3)
    for y in out.values():
        assert float(tf.reduce_min(y)) >= -1.0 and float(tf.reduce_max(y)) <= 1.0
    latent = model.encode(x_a, "a")
    assert latent.shape == (3, 1, 1, 8 * config.model.gen_ch)
    assert model.discriminate(x_b, "b").shape == (5, 1)
    streams = model.streams(x_a[:2], x_b[:2])
    assert streams["x_aba"].shape == (2, 32, 32, 3) and streams["x_bab"].shape == (2, 32, 32, 1)


def _variables_per_layer():
    return 2  # every layer has a kernel and a bias (BN beta stands in for the conv bias)


@pytest.mark.parametrize("shared", [(0, 0, 0), (4, 3, 4), (2, 1, 1)])
def test_shared_layers_are_counted_once(shared):
    enc, gen, dis = shared
    config = tiny_config(**{"model.shared_encoder_layers": enc, "model.shared_generator_layers": gen,
                            "model.shared_discriminator_layers": dis})
    model = build_model(config)
    variables = model.trainable_variables
    assert len({id(v) for v in variables}) == len(variables)
    # 3 networks x 5 layers per domain; each shared layer exists once instead of twice.
    assert len(variables) == _variables_per_layer() * (2 * 5 * 3 - (enc + gen + dis))
    assert len(model.encoder.shared) == enc and len(model.generator.shared) == gen
    assert len(model.discriminator.shared) == dis


def test_both_domains_call_the_same_shared_layer_objects(config):
    model = build_model(config)
    shared_vars = [v for layer in model.encoder.shared for v in layer.trainable_variables]
    shared_vars += [v for layer in model.generator.shared for v in layer.trainable_variables]
    x = {"a": tf.random.uniform([2, 32, 32, 3]), "b": tf.random.uniform([2, 32, 32, 1])}
    for domain in ("a", "b"):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(model.translate(x[domain], domain, domain, training=True))
        grads = tape.gradient(loss, shared_vars)
        assert all(g is not None for g in grads), f"domain {domain} does not use every shared layer"
    # And each domain's private layers are its own.
    private_a = {id(v) for layer in model.encoder.private_a for v in layer.variables}
    private_b = {id(v) for layer in model.encoder.private_b for v in layer.variables}
    assert private_a and not private_a & private_b


def test_sharing_a_layer_whose_shape_differs_is_refused():
    with pytest.raises(UserError, match="shared_encoder_layers"):
        build_model(tiny_config(**{"model.shared_encoder_layers": 5}))  # 3- vs 1-channel inputs
    with pytest.raises(UserError, match="shared_generator_layers"):
        build_model(tiny_config(**{"model.shared_generator_layers": 5}))
    # Same channels on both sides (mnist/usps): every layer may be shared.
    model = build_model(tiny_config("mnist_usps", **{"model.shared_encoder_layers": 5,
                                                      "model.shared_generator_layers": 5,
                                                      "model.shared_discriminator_layers": 5}))
    assert not model.encoder.private_a and not model.generator.private_b


def test_pytorch_style_padding():
    """5x5 stride-2 padding-2 conv: 32 -> 16 with symmetric padding (TF 'same' would pad 1 / 2)."""
    block = ConvBlock(1, 5, strides=2, padding=2, kernel_initializer="ones")
    x = np.zeros([1, 32, 32, 1], np.float32)
    x[0, 0, 0, 0] = 1.0  # a corner pixel reaches output (0, 0) only with 2 pixels of padding on top/left
    y = block(x).numpy()
    assert y.shape == (1, 16, 16, 1)
    assert y[0, 0, 0, 0] == 1.0
    up = ConvBlock(3, 4, strides=2, padding=1, transpose=True)
    assert up(np.zeros([2, 8, 8, 5], np.float32)).shape == (2, 16, 16, 3)
    first = ConvBlock(7, 4, strides=2, padding=0, transpose=True)
    assert first(np.zeros([2, 1, 1, 5], np.float32)).shape == (2, 4, 4, 7)


@pytest.mark.parametrize("rate, dtype, shape", [(0.1, "float32", [101, 33, 3, 11]), (0.5, "bfloat16", [7, 5, 3])])
def test_dropout_drops_at_the_rate_and_keeps_the_mean(rate, dtype, shape):
    x = tf.ones(shape, dtype)
    y = dropout(x, rate, tf.constant([3, 4])).numpy().astype(np.float32)
    kept = y != 0
    assert y.shape == tuple(shape)
    assert abs(kept.mean() - (1 - rate)) < 4 * np.sqrt(rate * (1 - rate) / kept.size)
    np.testing.assert_allclose(y[kept], 1 / (1 - rate), rtol=1e-2 if dtype == "bfloat16" else 1e-4)
    assert np.array_equal(dropout(x, rate, tf.constant([3, 4])).numpy(), y)  # a pure function of the seed
    assert not np.array_equal(dropout(x, rate, tf.constant([3, 5])).numpy().astype(np.float32), y)
    with pytest.raises(ValueError, match="dropout"):
        ConvBlock(4, 3, dropout=1.0)


def test_coordinate_channels():
    x = tf.zeros([2, 4, 4, 1])
    y = CoordinateChannels()(x).numpy()
    assert y.shape == (2, 4, 4, 3)
    expected = (np.arange(4) - 2) / 2  # (i - H/2) / (H/2)
    np.testing.assert_allclose(y[0, :, 0, 1], expected)  # channel 1: row coordinate
    np.testing.assert_allclose(y[0, 0, :, 2], expected)  # channel 2: column coordinate
    model = build_model(tiny_config(**{"model.coord_channels": True}))
    kernel = model.encoder.private_a[0].conv.kernel
    assert kernel.shape[2] == 3 + 2


def test_serialization_round_trip(config):
    block = ConvBlock(8, 5, strides=2, padding=2, norm="batch", activation="leaky_relu", leaky_slope=0.2)
    clone = ConvBlock.from_config(block.get_config())
    assert clone.get_config() == block.get_config()
    model = build_model(config)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(model))
    assert isinstance(restored, UNIT)
    assert restored.unit_config == model.unit_config
    restored.build()
    assert len(restored.trainable_variables) == len(model.trainable_variables)
    net = CoupledNetwork.from_config(model.encoder.get_config())
    assert len(net.shared) == len(model.encoder.shared)
