"""The fast paths (unit_tf.fast): each equals the plain Keras computation, `model.fast_paths` turns them off (and
`auto` off on a GPU), training with and without them agrees, and the Keras private APIs they lean on still exist."""

from __future__ import annotations

import inspect
import re

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import StepLogs, synthetic_digits, tiny_config, tiny_translation_config

from unit_tf import fast
from unit_tf.config import DA_SETTINGS, defining_differences, validate
from unit_tf.errors import UserError
from unit_tf.fast import conv_matmul, matmul, winograd
from unit_tf.fast.adam import FusedAdam
from unit_tf.fast.batch_norm import FusedBatchNormalization
from unit_tf.layers import ConvBlock
from unit_tf.model import build_model
from unit_tf.optimizers import make_optimizer

# ------------------------------------------------------------------------------------------------- the switch


def _digit_da_config(fast_paths: str):
    """Tiny digit DA networks (classifier head, dropout, coordinate channels; 3- vs 1-channel domains; both
    colour-jittered passes of D_b).

    Batch-norm epsilon 1e-3, not 1e-5: these tiny networks (batch 8, 4-8 channels) have batch-norm channels
    whose spread is far below their mean, where x - mean keeps few significant digits and each kernel (Keras'
    op chain, TF's fused one) rounds it its own way, equally far from float64; 1 / sqrt(var + eps) then
    magnifies that. With eps 1e-5 and the jittered passes, three steps moved Adam moments by up to 8 % of
    their scale (one pass: 2.8 %; with it and Keras' batch norm in both runs: 0.012 %); with 1e-3 every path
    agrees as it does without them (<= 0.004 %)."""
    return tiny_config("svhn_mnist", **{**DA_SETTINGS, "model.bn_epsilon": 1e-3, "model.fast_paths": fast_paths,
                                        "train.seed": 3})


def _translation_config(fast_paths: str):
    return tiny_translation_config(**{"model.fast_paths": fast_paths, "train.seed": 3})


def _batch(config, n: int) -> dict[str, tf.Tensor]:
    m = config.model
    x_a, y_a = synthetic_digits(n, m.image_size, m.channels_a, seed=1)
    x_b, _ = synthetic_digits(n, m.image_size, m.channels_b, seed=2)
    batch = {"x_a": tf.constant(x_a / 127.5 - 1, tf.float32), "x_b": tf.constant(x_b / 127.5 - 1, tf.float32)}
    if m.num_classes:
        batch["y_a"] = tf.constant(y_a, tf.int32)
    return batch


def _train(config, steps: int = 3) -> tuple[list[dict[str, float]], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per-step logs, the model's variables (weights, statistics, noise state) and the optimizers' (step, slots)
    by path after `steps` fit steps on one fixed batch from the same initial weights."""
    keras.utils.set_random_seed(11)
    model = build_model(config)
    ds = tf.data.Dataset.from_tensors(_batch(config, config.data.batch_size)).repeat()
    logs = StepLogs()
    model.fit(ds, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=[logs])
    slots = {f"{name}:{v.path}": v.numpy() for name, optimizer in (("d", model.d_optimizer), ("g", model.g_optimizer))
             for v in optimizer.variables}
    return logs.steps, {v.path: v.numpy() for v in model.variables}, slots


@pytest.mark.parametrize("make_config", [_digit_da_config, _translation_config], ids=["digits_da", "residual"])
def test_training_with_and_without_fast_paths_agrees(make_config):
    """Three steps with model.fast_paths=off (plain Keras layers and Adam) and auto (every fast path on this CPU)
    give the same losses and the same variables, under the same paths (checkpoints stay interchangeable)."""
    off_logs, off_vars, off_slots = _train(make_config("off"))
    auto_logs, auto_vars, auto_slots = _train(make_config("auto"))
    assert len(off_logs) == len(auto_logs) == 3
    for step, (want, got) in enumerate(zip(off_logs, auto_logs, strict=True), 1):
        assert sorted(got) == sorted(want)
        for name in want:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-6, err_msg=f"step {step} {name}")
    assert sorted(auto_vars) == sorted(off_vars) and sorted(auto_slots) == sorted(off_slots)
    # Adam moves each weight by about the learning rate whatever its gradient's size, so a weight whose gradient
    # nearly cancels over the steps amplifies float rounding: a few such elements differ by up to ~3 % of one
    # step (residual networks); the tolerance is 10 % of one step on top of rtol 1e-4.
    step = make_config("off").optimizer.learning_rate
    for path, want in off_vars.items():
        np.testing.assert_allclose(auto_vars[path], want, rtol=1e-4, atol=0.1 * step, err_msg=path)
    # Adam's moments are gradient averages: a max-pool or ReLU tie broken the other way by a rounding moves a
    # few elements' gradients by ~1e-5 of their layer's scale. The scale is the layer's (its kernel's and bias's
    # moments together), not each array's own: a logit conv's bias gradient sums real and fake terms that nearly
    # cancel (a 1-element moment ~100x below its kernel's), so its rounding is relative to the terms.
    scale: dict[str, float] = {}
    for path, want in off_slots.items():
        scale[_layer_slot(path)] = max(scale.get(_layer_slot(path), 0.0), float(np.abs(want).max(initial=0.0)))
    for path, want in off_slots.items():
        np.testing.assert_allclose(auto_slots[path], want, rtol=1e-4, atol=1e-4 * scale[_layer_slot(path)],
                                   err_msg=path)


def _layer_slot(path: str) -> str:
    """An optimizer slot's path without its variable's name: one key for a layer's kernel and bias momentum."""
    return re.sub(r"_(kernel|bias|gamma|beta)_(momentum|velocity)$", r"_\2", path)


def _layers(model: keras.Model) -> list[keras.layers.Layer]:
    return list(model._flatten_layers(include_self=False, recursive=True))


def _convolve_calls(model, config, monkeypatch) -> int:
    """How many times a forward pass of every network asks conv_matmul for a matmul form."""
    calls = []
    real = conv_matmul.convolve
    monkeypatch.setattr(conv_matmul, "convolve", lambda conv, x, **kw: calls.append(conv) or real(conv, x, **kw))
    batch = _batch(config, 2)
    model.streams(batch["x_a"], batch["x_b"])
    model.discriminate(batch["x_a"], "a")
    if config.model.num_classes:
        model.classify(batch["x_a"], "a")
    return len(calls)


def _uses_fast_paths(config, monkeypatch) -> dict[str, bool]:
    model = build_model(config)
    batch_norms = [layer for layer in _layers(model) if isinstance(layer, keras.layers.BatchNormalization)]
    assert batch_norms  # the digit networks' batch norms
    optimizers = [model.d_optimizer.inner_optimizer, model.g_optimizer.inner_optimizer]
    assert all(isinstance(o, keras.optimizers.Adam) for o in optimizers)
    return {"batch_norm": any(isinstance(layer, FusedBatchNormalization) for layer in batch_norms),
            "conv_matmul": _convolve_calls(model, config, monkeypatch) > 0,
            "adam": any(isinstance(o, FusedAdam) for o in optimizers)}


def test_off_uses_no_fast_path_and_auto_every_one_on_a_cpu(monkeypatch):
    assert not fast.gpu_visible()  # this test machine: no GPU
    assert _uses_fast_paths(_digit_da_config("off"), monkeypatch) == dict.fromkeys(
        ("batch_norm", "conv_matmul", "adam"), False)
    assert _uses_fast_paths(_digit_da_config("auto"), monkeypatch) == dict.fromkeys(
        ("batch_norm", "conv_matmul", "adam"), True)


def test_auto_uses_no_fast_path_on_a_gpu(monkeypatch):
    monkeypatch.setattr(fast, "gpu_visible", lambda: True)
    assert not fast.enabled("auto") and not fast.enabled("off")
    assert _uses_fast_paths(_digit_da_config("auto"), monkeypatch) == dict.fromkeys(
        ("batch_norm", "conv_matmul", "adam"), False)


def test_the_setting_is_validated_serialized_and_does_not_define_the_run():
    with pytest.raises(ValueError, match="fast_paths"):
        fast.enabled("on")
    config = tiny_config()
    config.model.fast_paths = "fast"
    with pytest.raises(UserError, match="model.fast_paths must be one of auto, off"):
        validate(config)
    assert tiny_config(**{"model.fast_paths": "off"}).model.fast_paths == "off"
    assert defining_differences(tiny_config(), tiny_config(**{"model.fast_paths": "off"})) == []
    block = ConvBlock(4, 3, padding=1, norm="batch", fast_paths="off")
    assert block.get_config()["fast_paths"] == "off"
    restored = ConvBlock.from_config(block.get_config())
    assert type(restored.bn) is keras.layers.BatchNormalization and not restored.use_fast_paths
    assert type(ConvBlock(4, 3, padding=1, norm="batch").bn) is FusedBatchNormalization
    # Registered names unchanged by the move to unit_tf.fast: files saved before still name these classes.
    assert keras.saving.get_registered_name(FusedAdam) == "unit_tf>FusedAdam"
    assert keras.saving.get_registered_name(FusedBatchNormalization) == "unit_tf>FusedBatchNormalization"


def test_checkpoint_written_with_fast_paths_restores_without(tmp_path):
    """Same variables under the same paths and the same optimizer slots: a run may change model.fast_paths."""
    from unit_tf.checkpoints import RunCheckpoint

    config = _digit_da_config("auto")
    model = build_model(config)
    ds = tf.data.Dataset.from_tensors(_batch(config, 8)).repeat()
    model.fit(ds, epochs=1, steps_per_epoch=2, verbose=0)
    RunCheckpoint(model, tmp_path).save()
    plain = build_model(_digit_da_config("off"))
    assert RunCheckpoint(plain, tmp_path).restore_latest() == 2
    saved = {v.path: v.numpy() for v in model.variables}
    for v in plain.variables:
        np.testing.assert_array_equal(v.numpy(), saved[v.path], err_msg=v.path)
    for a, b in zip(model.g_optimizer.variables, plain.g_optimizer.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)


def test_make_optimizer_keeps_the_hyperparameters_without_fast_paths():
    config = tiny_config()
    fused = make_optimizer(config.optimizer, "g", fast_paths="auto").inner_optimizer
    plain = make_optimizer(config.optimizer, "g", fast_paths="off").inner_optimizer
    assert type(fused) is FusedAdam and type(plain) is keras.optimizers.Adam
    ignore = {"name"}
    assert {k: v for k, v in fused.get_config().items() if k not in ignore} == {
        k: v for k, v in plain.get_config().items() if k not in ignore}


# ------------------------------------------------------------------------------- Keras private APIs relied on


def _fix(change: str, api: str, user: str, remedy: str) -> str:
    """The failure message: what Keras changed, who relies on it, what to do."""
    return f"Keras {keras.__version__} {change} {api}, which {user} relies on: {remedy}"


FUSED_ADAM_REMEDY = "set model.fast_paths=off or update unit_tf.fast.adam.FusedAdam"


def test_keras_optimizer_private_api_that_fused_adam_reads():
    """FusedAdam reads Optimizer._get_variable_index, Adam._momentums / _velocities (one slot per variable, in
    the index order) and overrides Adam.update_step(gradient, variable, learning_rate)."""
    user = "unit_tf.fast.adam.FusedAdam"
    parameters = list(inspect.signature(keras.optimizers.Adam.update_step).parameters)
    assert parameters == ["self", "gradient", "variable", "learning_rate"], _fix(
        "changed the signature of", f"Adam.update_step (now {parameters})", user, FUSED_ADAM_REMEDY)
    assert callable(getattr(keras.optimizers.Adam, "_get_variable_index", None)), _fix(
        "removed", "Optimizer._get_variable_index", user, FUSED_ADAM_REMEDY)
    variables = [keras.Variable(np.zeros([2, 3], np.float32)), keras.Variable(np.zeros([5], np.float32))]
    optimizer = keras.optimizers.Adam()
    optimizer.build(variables)
    for slots in ("_momentums", "_velocities"):
        assert isinstance(getattr(optimizer, slots, None), list), _fix(
            "removed", f"Adam.{slots}", user, FUSED_ADAM_REMEDY)
        for variable in variables:
            index = optimizer._get_variable_index(variable)
            assert tuple(getattr(optimizer, slots)[index].shape) == tuple(variable.shape), _fix(
                "changed the slot order of", f"Adam.{slots} / Optimizer._get_variable_index", user, FUSED_ADAM_REMEDY)
    for name in ("amsgrad", "iterations", "beta_1", "beta_2", "epsilon"):
        assert hasattr(optimizer, name), _fix("removed", f"Adam.{name}", user, FUSED_ADAM_REMEDY)


def test_keras_trainer_private_api_that_multi_worker_fit_overrides():
    """unit_tf.distribute.MultiWorkerFit overrides TensorFlowTrainer._maybe_symbolic_build(iterator=...,
    data_batch=...) and calls Keras' with those keywords."""
    trainers = [cls for cls in keras.Model.__mro__ if cls.__name__ == "TensorFlowTrainer"]
    user = "unit_tf.distribute.MultiWorkerFit (multi-worker training)"
    remedy = "update MultiWorkerFit._maybe_symbolic_build to Keras' new method"
    assert trainers, _fix("removed", "the trainer class TensorFlowTrainer", user, remedy)
    method = getattr(trainers[0], "_maybe_symbolic_build", None)
    assert callable(method), _fix("removed", "TensorFlowTrainer._maybe_symbolic_build", user, remedy)
    parameters = list(inspect.signature(method).parameters)
    assert parameters[0] == "self" and {"iterator", "data_batch"} <= set(parameters[1:]), _fix(
        "changed the parameters of", f"TensorFlowTrainer._maybe_symbolic_build (now {parameters})", user, remedy)


# ----------------------------------------------------------- each fast path equals the plain Keras computation


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
    # ReductionToOneDevice: no collective ops, whose instance keys would clash with the strategies of
    # tests/test_model.py when both files run in one process.
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"], tf.distribute.ReductionToOneDevice())
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
@pytest.mark.parametrize("avx512", ["0", "1"])
def test_tiny_map_convolutions_as_matmuls_equal_the_convolution(layer, shape, avx512, monkeypatch):
    """Values and gradients (input, kernel, bias) of the matmul forms equal TF's convolution, in the forms of
    CPUs with and without AVX-512."""
    monkeypatch.setenv("UNIT_AVX512", avx512)
    layer = layer.__class__.from_config(layer.get_config())  # a fresh, unbuilt copy for each parameter set
    x = tf.random.stateless_normal(shape, seed=[5, 6])
    layer.build(shape)
    layer.kernel.assign(tf.random.stateless_normal(layer.kernel.shape, seed=[7, 8]))
    results = _outputs_and_gradients((layer, lambda t: conv_matmul.convolve(layer, t)), x,
                                     layer.trainable_variables)
    for want, got in zip(*results, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_conv_block_adds_a_matmul_forms_bias_after_its_max_pool(dtype):
    """A block whose conv runs as a matmul and is max-pooled adds the conv's bias after the pool: the same
    values and gradients (input, kernel, bias) as the block without fast paths."""
    policy = "mixed_bfloat16" if dtype == "bfloat16" else "float32"
    blocks = [ConvBlock(6, 5, padding=2, activation="leaky_relu", pool=2, fast_paths=f, dtype=policy)
              for f in ("auto", "off")]
    x = tf.random.stateless_normal([3, 4, 4, 5], seed=[5, 6])  # 4x4: the Toeplitz form
    for block in blocks:
        block.build(x.shape)
    blocks[0].conv.kernel.assign(tf.random.stateless_normal(blocks[0].conv.kernel.shape, seed=[7, 8]))
    blocks[0].conv.bias.assign(tf.random.stateless_normal([6], seed=[9, 10]))
    blocks[1].set_weights(blocks[0].get_weights())
    assert conv_matmul._form(blocks[0].conv, 4, 4, tf.float32) == "toeplitz"
    results = [_outputs_and_gradients([lambda t, b=b: b(tf.cast(t, dtype), training=True)], x,
                                      b.trainable_variables)[0] for b in blocks]
    tol = 1e-4 if dtype == "float32" else 0.05
    for got, want in zip(*results, strict=True):
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())
    unbiased = conv_matmul.convolve(blocks[0].conv, x, bias=False)
    np.testing.assert_allclose(unbiased + blocks[0].conv.bias, conv_matmul.convolve(blocks[0].conv, x), atol=1e-6)


def _check_kernel_gradient_form(layer, shape, dtype, form, native):
    """`convolve` takes `form` for `layer` on `shape`, and its output and gradients (input, kernel) equal those of
    native(x, kernel), TF's own op (to float32 or bf16 rounding)."""
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


def test_bf16_kernel_gradient_by_tap_equals_the_convolution():
    """bfloat16 8x8 maps: the conv's kernel gradient tap by tap equals oneDNN's."""
    _check_kernel_gradient_form(keras.layers.Conv2D(6, 5, padding="same"), [3, 8, 8, 5], "bfloat16",
                                "tap_kernel_grad", lambda t, k: tf.nn.conv2d(t, k, 1, "SAME"))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("settings, shape", [
    (dict(kernel_size=4, strides=2), [3, 8, 8, 5]),  # generator's 8x8 -> 16x16
    (dict(kernel_size=(4, 6), strides=2, use_bias=False), [3, 5, 6, 5]),
    (dict(kernel_size=6, strides=3), [2, 4, 7, 5]),
])
def test_transposed_kernel_gradient_by_block_equals_the_convolution(settings, shape, dtype):
    """Transposed convs on maps of 17-64 pixels: the kernel gradient block by block equals TF's."""
    layer = keras.layers.Conv2DTranspose(6, padding="same", **settings)
    out_shape = [shape[0], shape[1] * layer.strides[0], shape[2] * layer.strides[1], layer.filters]
    _check_kernel_gradient_form(layer, shape, dtype, "block_kernel_grad",
                                lambda t, k: tf.nn.conv2d_transpose(t, k, out_shape, layer.strides, "SAME"))


@pytest.mark.parametrize("settings, shape", [
    (dict(kernel_size=5, strides=2), [3, 20, 20, 5]),  # digit encoder's padded 20x20 -> 8x8
    (dict(kernel_size=(4, 3), strides=2, use_bias=False), [2, 9, 7, 4]),  # odd map, kernel 4 x 3
    (dict(kernel_size=5, strides=3), [2, 11, 12, 3]),
])
def test_strided_kernel_gradient_by_block_equals_the_convolution(settings, shape):
    """bfloat16 strided convs on small maps: the kernel gradient block by block equals oneDNN's; float32 keeps
    oneDNN's own."""
    layer = keras.layers.Conv2D(6, padding="valid", **settings)
    _check_kernel_gradient_form(layer, shape, "bfloat16", "strided_kernel_grad",
                                lambda t, k: tf.nn.conv2d(t, k, layer.strides, "VALID"))
    assert conv_matmul._form(layer, shape[1], shape[2], tf.float32) is None


@pytest.mark.parametrize("settings, shape", [
    (dict(filters=6, kernel_size=5), [3, 8, 8, 9]),  # the discriminator's 5x5 convs
    (dict(filters=4, kernel_size=(3, 5), use_bias=False), [2, 7, 6, 8]),  # non-square map and kernel
])
def test_flipped_input_gradient_equals_the_convolution(settings, shape, monkeypatch):
    """float32, no AVX-512: a stride-1 'same' conv's input gradient as a conv with the flipped kernel equals TF's;
    with AVX-512, in bfloat16 and on few input channels the conv keeps oneDNN's."""
    monkeypatch.setenv("UNIT_AVX512", "0")
    layer = keras.layers.Conv2D(padding="same", **settings)
    _check_kernel_gradient_form(layer, shape, "float32", "flipped_input_grad",
                                lambda t, k: tf.nn.conv2d(t, k, 1, "SAME"))
    assert conv_matmul._form(layer, shape[1], shape[2], tf.bfloat16) != "flipped_input_grad"
    few = keras.layers.Conv2D(6, 5, padding="same")
    few.build([1, 8, 8, conv_matmul.MIN_FLIPPED_CHANNELS - 1])
    assert conv_matmul._form(few, 8, 8, tf.float32) is None
    monkeypatch.setenv("UNIT_AVX512", "1")
    assert conv_matmul._form(layer, shape[1], shape[2], tf.float32) is None


@pytest.mark.parametrize("r", [3, 5])
def test_winograd_matrices_compute_the_correlation(r):
    """F(4, r): A^T [(G g) . (B^T d)] is the correlation of d with g (float64, to 1e-12)."""
    a_t, g, b_t = winograd.matrices(winograd.TILE, r)
    rng = np.random.default_rng(r)
    for _ in range(20):
        d, k = rng.standard_normal(winograd.TILE + r - 1), rng.standard_normal(r)
        want = np.array([d[i:i + r] @ k for i in range(winograd.TILE)])
        np.testing.assert_allclose(a_t @ ((g @ k) * (b_t @ d)), want, atol=1e-12 * np.abs(want).max())


@pytest.mark.parametrize("r, shape, filters", [
    (5, [3, 8, 8, 16], 24),  # the discriminator's 5x5 conv on 8x8 maps
    (5, [2, 16, 12, 8], 5),  # non-square map, two tile rows and three columns
    (3, [2, 8, 4, 4], 6),
])
def test_winograd_conv_equals_the_convolution(r, shape, filters):
    """Winograd's conv and both its gradients equal the conv's: exactly up to float64 rounding (the algorithm),
    and in float32 to a rounding error bounded at a few times the direct conv's (measured: at most 7e-6 of the
    largest value, direct 6e-7)."""
    rng = np.random.default_rng(r)
    x = rng.standard_normal(shape)
    kernel = rng.standard_normal([r, r, shape[3], filters]) / np.sqrt(r * r * shape[3])
    dy = rng.standard_normal(shape[:3] + [filters])

    def run(conv, dtype):
        xt, kt = tf.constant(x, dtype), tf.constant(kernel, dtype)
        with tf.GradientTape() as tape:
            tape.watch([xt, kt])
            y = conv(xt, kt)
        return [t.numpy().astype(np.float64) for t in (y, *tape.gradient(y, [xt, kt], tf.constant(dy, dtype)))]

    want = run(lambda t, k: tf.nn.conv2d(t, k, 1, "SAME"), tf.float64)
    for tol, dtype in ((1e-12, tf.float64), (3e-5, tf.float32)):
        for name, got, ref in zip(("y", "dx", "dkernel"), run(winograd.conv, dtype), want, strict=True):
            np.testing.assert_allclose(got, ref, rtol=0, atol=tol * np.abs(ref).max(), err_msg=f"{dtype} {name}")


def test_winograd_form_runs_where_it_was_measured():
    """float32 5x5 'same' convs on 8x8 - 16x16 maps of >= 64 channels take Winograd (values and gradients as the
    conv's through `convolve`); 3 channels, 3x3 kernels, larger or untileable maps, bfloat16 do not."""
    layer = keras.layers.Conv2D(6, 5, padding="same")
    _check_kernel_gradient_form(layer, [2, 8, 8, conv_matmul.MIN_WINOGRAD_CHANNELS], "float32", "winograd",
                                lambda t, k: tf.nn.conv2d(t, k, 1, "SAME"))
    assert conv_matmul._form(layer, 16, 16, tf.float32) == "winograd"
    assert conv_matmul._form(layer, 8, 8, tf.bfloat16) == "tap_kernel_grad"
    for h, w in ((32, 32), (10, 10), (4, 4)):
        assert conv_matmul._form(layer, h, w, tf.float32) != "winograd", (h, w)
    few = keras.layers.Conv2D(6, 5, padding="same")
    few.build([1, 8, 8, conv_matmul.MIN_WINOGRAD_CHANNELS - 1])
    small_kernel = keras.layers.Conv2D(6, 3, padding="same")
    small_kernel.build([1, 8, 8, conv_matmul.MIN_WINOGRAD_CHANNELS])
    for other in (few, small_kernel):
        assert conv_matmul._form(other, 8, 8, tf.float32) != "winograd"


def test_winograd_discriminator_equals_the_plain_layers(monkeypatch):
    """The digit discriminator with the channels of digits_da (its 16x16 and 8x8 convs take Winograd): logits and
    their gradients (every weight, the input image) as with the plain layers, to float rounding.

    The gradients are compared as wholes (relative norm of the difference): a max-pool window whose two largest
    values lie within Winograd's rounding sends its gradient to the other pixel, a discrete change of a few
    hundred elements. Measured here: one of the 16x16 conv's 32,768 windows (its top two 1e-6 apart) moves the
    image's gradient by 2e-3 of its norm, the first conv's kernel gradient by 1.9e-3, the rest by <= 6e-4
    (without that window all agree to 6e-6); a conv computed wrongly moves them by far more."""
    forms = []
    real_form = conv_matmul._form
    monkeypatch.setattr(conv_matmul, "_form", lambda *args: forms.append(real_form(*args)) or forms[-1])
    x = tf.random.stateless_uniform([4, 32, 32, 3], seed=[1, 2], minval=-1, maxval=1)
    results = []
    for fast_paths in ("off", "auto"):
        keras.utils.set_random_seed(11)
        model = build_model(tiny_config("svhn_mnist", **{**DA_SETTINGS, "model.dis_ch": 64,
                                                         "model.fast_paths": fast_paths}))
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits = model.discriminate(x, "a")
            loss = tf.reduce_sum(tf.square(logits) + tf.sin(logits))
        grads = tape.gradient(loss, [x, *model.d_variables])  # the classifier head's: None (not in this pass)
        results.append([logits.numpy(), *(g.numpy() for g in grads if g is not None)])
    assert forms.count("winograd") >= 2  # the 16x16 and the 8x8 conv (at build and in the pass)
    assert len(results[0]) >= 2 + 2 * 5  # logits, the image's gradient, five convs' kernels and biases
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=0, atol=2e-5 * np.abs(results[0][0]).max())
    for index, (want, got) in enumerate(zip(results[0][1:], results[1][1:], strict=True)):
        assert np.linalg.norm(got - want) <= 2e-2 * np.linalg.norm(want), index


@pytest.mark.parametrize("avx512, onednn", [("0", "0"), ("1", "0"), ("0", "1")])
@pytest.mark.parametrize("transpose_a, transpose_b", [(False, False), (False, True), (True, False), (True, True)])
def test_matmul_in_the_faster_order_equals_tf_matmul(transpose_a, transpose_b, avx512, onednn, monkeypatch):
    """`fast.matmul.matmul` (rows 5, columns 40: the swapped order where it applies) gives tf.matmul's product
    and gradients, and swaps exactly where b is stored transposed on a CPU without AVX-512 whose TensorFlow runs
    its own kernels (the form is decided from $TF_ENABLE_ONEDNN_OPTS; the kernels here are this process's)."""
    monkeypatch.setenv("UNIT_AVX512", avx512)
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", onednn)
    a = tf.random.stateless_normal([16, 5] if transpose_a else [5, 16], seed=[1, 2])
    b = tf.random.stateless_normal([40, 16] if transpose_b else [16, 40], seed=[3, 4])
    results = []
    for run in (tf.matmul, matmul.matmul):
        with tf.GradientTape() as tape:
            tape.watch([a, b])
            c = run(a, b, transpose_a=transpose_a, transpose_b=transpose_b)
            loss = tf.reduce_sum(tf.sin(c))
        results.append([c.numpy(), *(t.numpy() for t in tape.gradient(loss, [a, b]))])
    for want, got in zip(*results, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    graph = tf.function(lambda: matmul.product(a, b, transpose_a, transpose_b)).get_concrete_function().graph
    swapped = any(op.type == "Transpose" for op in graph.get_operations())
    assert swapped == (transpose_b and avx512 == "0" and onednn == "0")


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



def _adam_step(strategy, optimizer, variables):
    @tf.function
    def step(g):
        def replica():
            with tf.GradientTape() as tape:  # d loss / d v = g
                loss = tf.add_n([tf.reduce_sum(v * c) for v, c in zip(variables, g, strict=True)])
            optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        strategy.run(replica)
    return step


@pytest.mark.parametrize("mirrored", [False, True])
def test_fused_adam_equals_keras_adam(mirrored):
    """The fused kernel makes Keras' Adam update, on every replica's copy under MirroredStrategy."""
    # ReductionToOneDevice: no collective ops, whose instance keys would clash with the other tests' strategies.
    strategy = (tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"], tf.distribute.ReductionToOneDevice())
                if mirrored else tf.distribute.get_strategy())
    grads = [[tf.random.stateless_normal([3, 4], seed=[i, j]) for j in range(2)] for i in range(3)]
    start = [tf.random.stateless_normal([3, 4], seed=[9, j]) for j in range(2)]
    finals = []
    for cls in (keras.optimizers.Adam, FusedAdam):
        with strategy.scope():
            variables = [keras.Variable(value) for value in start]
            optimizer = cls(learning_rate=0.1, beta_1=0.5, beta_2=0.9, epsilon=1e-3)
            optimizer.build(variables)

        step = _adam_step(strategy, optimizer, variables)
        for g in grads:
            step(g)
        finals.append([np.stack([c.numpy() for c in strategy.experimental_local_results(v.value)])
                       for v in variables])
    for want, got, first in zip(*finals, start, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        assert np.abs(got - first.numpy()).min() > 1e-3  # every element moved
        assert (got == got[:1]).all()  # replicas hold the same weights


