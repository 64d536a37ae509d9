"""Shapes, weight sharing and serialization of the six networks."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import tiny_config

from unit_tf import conv_matmul
from unit_tf.errors import UserError
from unit_tf.layers import ConvBlock, CoordinateChannels, FusedBatchNormalization, dropout
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


def _batch_norm_results(layer: keras.layers.Layer, x: tf.Tensor, upstream: tf.Tensor) -> list[np.ndarray]:
    """Training output, its gradients (input, offset), the moving statistics after it, inference output."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        output = tf.cast(layer(x, training=True), tf.float32)
        loss = tf.reduce_sum(output * upstream)
    grad_x, grad_beta = tape.gradient(loss, [x, layer.beta])
    inference = tf.cast(layer(x, training=False), tf.float32)
    return [output.numpy(), grad_x.numpy(), grad_beta.numpy(),
            layer.moving_mean.numpy(), layer.moving_variance.numpy(), inference.numpy()]


@pytest.mark.parametrize("policy, scale", [("float32", False), ("mixed_bfloat16", False), ("float32", True)])
def test_fused_batch_norm_equals_keras_batch_norm(policy, scale):
    """Same forward, gradients and (biased) moving statistics as keras.layers.BatchNormalization."""
    keras.mixed_precision.set_global_policy(policy)
    try:
        settings = dict(momentum=0.9, epsilon=1e-5, scale=scale, synchronized=True)
        reference, fused = keras.layers.BatchNormalization(**settings), FusedBatchNormalization(**settings)
        x = tf.random.stateless_normal([8, 5, 5, 6], seed=[1, 2]) * 3.0 + 1.0
        upstream = tf.random.stateless_normal([8, 5, 5, 6], seed=[3, 4])
        for layer in (reference, fused):
            layer.build(x.shape)
            layer.beta.assign(tf.linspace(-1.0, 1.0, 6))
            if scale:
                layer.gamma.assign(tf.linspace(0.5, 2.0, 6))
        tol = 1e-5 if policy == "float32" else 2e-2
        for name, want, got in zip(("output", "grad_x", "grad_beta", "moving_mean", "moving_variance", "inference"),
                                   _batch_norm_results(reference, x, upstream), _batch_norm_results(fused, x, upstream),
                                   strict=True):
            np.testing.assert_allclose(got, want, rtol=tol, atol=tol, err_msg=name)
        ops = {op.type for op in tf.function(lambda t: fused(t, training=True)).get_concrete_function(
            tf.TensorSpec(x.shape)).graph.get_operations()}
        assert "FusedBatchNormV3" in ops  # the fused kernel, not the element-wise chain
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_fused_batch_norm_synchronizes_over_replicas():
    """Under two replicas the statistics are all-reduced (Keras' path): each replica normalizes with the GLOBAL
    batch's mean and variance, as one device would."""
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    x = np.concatenate([np.zeros([2, 2, 2, 3]), np.full([2, 2, 2, 3], 2.0)]).astype(np.float32)
    with strategy.scope():
        layer = FusedBatchNormalization(epsilon=0.0, scale=False, center=False, synchronized=True)
        layer.build(x.shape)
    shards = strategy.experimental_distribute_values_from_function(
        lambda ctx: x[2 * ctx.replica_id_in_sync_group: 2 * ctx.replica_id_in_sync_group + 2])
    out = strategy.run(tf.function(lambda t: layer(t, training=True)), args=(shards,))
    y = np.concatenate([v.numpy() for v in strategy.experimental_local_results(out)])
    np.testing.assert_allclose(y, np.concatenate([np.full([2, 2, 2, 3], -1.0), np.full([2, 2, 2, 3], 1.0)]))


def _outputs_and_gradients(runs, x, variables) -> list[list[np.ndarray]]:
    """For each way `run` of computing a conv: its output and the gradients of a nonlinear loss of it with
    respect to x and `variables`, as float32 arrays."""
    results = []
    for run in runs:
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.cast(run(x), tf.float32)
            loss = tf.reduce_sum(tf.square(y) + tf.sin(y))
        results.append([tf.cast(t, tf.float32).numpy() for t in (y, *tape.gradient(loss, [x, *variables]))])
    return results


@pytest.mark.parametrize("layer, shape", [
    (keras.layers.Conv2DTranspose(6, 4, strides=2, padding="valid"), [3, 1, 1, 5]),  # generator's first layer
    (keras.layers.Conv2D(6, 8, padding="valid"), [3, 8, 8, 5]),  # encoder's kernel-covers-the-map layer
    (keras.layers.Conv2D(6, 5, padding="same"), [3, 4, 4, 5]),  # discriminator's conv on 4x4 maps (Toeplitz)
    (keras.layers.Conv2D(6, 3, padding="same", use_bias=False), [3, 2, 3, 5]),  # non-square map, no bias
    (keras.layers.Conv2DTranspose(6, 4, strides=2, padding="same"), [3, 4, 4, 5]),  # generator's 4x4 -> 8x8
    (keras.layers.Conv2DTranspose(6, 6, strides=3, padding="same", use_bias=False), [3, 2, 3, 5]),  # stride 3
    (keras.layers.Conv2DTranspose(6, (4, 6), strides=2, padding="same"), [3, 3, 2, 5]),  # kernel 4 x 6
    (keras.layers.Conv2DTranspose(6, 8, strides=2, padding="same"), [3, 1, 2, 5]),  # kernel 4x the output
])
def test_tiny_map_convolutions_as_matmuls_equal_the_convolution(layer, shape):
    """Values and gradients (input, kernel, bias) of the matmul forms equal TF's convolution."""
    x = tf.random.stateless_normal(shape, seed=[5, 6])
    layer.build(shape)
    layer.kernel.assign(tf.random.stateless_normal(layer.kernel.shape, seed=[7, 8]))
    results = _outputs_and_gradients((layer, lambda t: conv_matmul.convolve(layer, t)), x,
                                     layer.trainable_variables)
    for want, got in zip(*results, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def _check_kernel_gradient_form(layer, shape, dtype, form, native, monkeypatch):
    """On a CPU `convolve` takes `form` for `layer` on `shape`, and its output and gradients (input, kernel) equal
    those of native(x, kernel), TF's own op (to float32 or bf16 rounding)."""
    monkeypatch.setattr(conv_matmul, "_gpus", lambda: False)
    layer.build(shape)
    layer.kernel.assign(tf.random.stateless_normal(layer.kernel.shape, seed=[7, 8]))
    x = tf.cast(tf.random.stateless_normal(shape, seed=[5, 6]), dtype)
    assert conv_matmul._form(layer, shape[1], shape[2], x.dtype) == form
    bias = (lambda t: tf.cast(layer.bias, t.dtype)) if layer.use_bias else (lambda t: 0.0)
    results = _outputs_and_gradients((lambda t: native(t, tf.cast(layer.kernel, t.dtype)),
                                      lambda t: conv_matmul.convolve(layer, t) - bias(t)), x, [layer.kernel])
    tol = 1e-4 if dtype == "float32" else 0.05
    for want, got in zip(*results, strict=True):
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())


def test_bf16_kernel_gradient_by_tap_equals_the_convolution(monkeypatch):
    """bfloat16 8x8 maps: the conv's kernel gradient tap by tap equals oneDNN's."""
    _check_kernel_gradient_form(keras.layers.Conv2D(6, 5, padding="same"), [3, 8, 8, 5], "bfloat16",
                                "tap_kernel_grad", lambda t, k: tf.nn.conv2d(t, k, 1, "SAME"), monkeypatch)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("settings, shape", [
    (dict(kernel_size=4, strides=2), [3, 8, 8, 5]),  # generator's 8x8 -> 16x16
    (dict(kernel_size=(4, 6), strides=2, use_bias=False), [3, 5, 6, 5]),
    (dict(kernel_size=6, strides=3), [2, 4, 7, 5]),
])
def test_transposed_kernel_gradient_by_block_equals_the_convolution(settings, shape, dtype, monkeypatch):
    """Transposed convs on maps of 17-64 pixels: the kernel gradient block by block equals TF's."""
    layer = keras.layers.Conv2DTranspose(6, padding="same", **settings)
    out_shape = [shape[0], shape[1] * layer.strides[0], shape[2] * layer.strides[1], layer.filters]
    _check_kernel_gradient_form(layer, shape, dtype, "block_kernel_grad",
                                lambda t, k: tf.nn.conv2d_transpose(t, k, out_shape, layer.strides, "SAME"),
                                monkeypatch)


@pytest.mark.parametrize("settings, shape", [
    (dict(kernel_size=5, strides=2), [3, 20, 20, 5]),  # digit encoder's padded 20x20 -> 8x8
    (dict(kernel_size=(4, 3), strides=2, use_bias=False), [2, 9, 7, 4]),  # odd map, kernel 4 x 3
    (dict(kernel_size=5, strides=3), [2, 11, 12, 3]),
])
def test_strided_kernel_gradient_by_block_equals_the_convolution(settings, shape, monkeypatch):
    """bfloat16 strided convs on small maps: the kernel gradient block by block equals oneDNN's; float32 keeps
    oneDNN's own."""
    layer = keras.layers.Conv2D(6, padding="valid", **settings)
    _check_kernel_gradient_form(layer, shape, "bfloat16", "strided_kernel_grad",
                                lambda t, k: tf.nn.conv2d(t, k, layer.strides, "VALID"), monkeypatch)
    assert conv_matmul._form(layer, shape[1], shape[2], tf.float32) is None


def test_larger_maps_keep_the_convolution():
    layer = keras.layers.Conv2D(4, 5, padding="same")
    layer.build([1, 8, 8, 3])
    assert conv_matmul.convolve(layer, tf.zeros([1, 8, 8, 3])) is None  # 8x8 > MAX_TOEPLITZ_PIXELS
    strided = keras.layers.Conv2D(4, 5, strides=2, padding="valid")
    strided.build([1, 16, 16, 3])
    assert conv_matmul.convolve(strided, tf.zeros([1, 16, 16, 3])) is None
    odd = keras.layers.Conv2DTranspose(4, 3, strides=2, padding="same")  # kernel not a multiple of the stride
    odd.build([1, 2, 2, 3])
    assert conv_matmul.convolve(odd, tf.zeros([1, 2, 2, 3])) is None


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
