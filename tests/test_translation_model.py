"""The residual translation networks (paper Sec. 4, official COCOResGen2 / COCODis) and the paper's ablation
switches: shapes, instance norm, which layers are shared, and that every variant trains."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import tiny_translation_config

from unit_tf.config import OFFICIAL_GENERATOR, PRESETS, UNITConfig, apply_overrides, translation_preset
from unit_tf.errors import UserError
from unit_tf.layers import ResidualBlock
from unit_tf.losses import term_names
from unit_tf.model import UNIT, build_model

SIZE = 16


def _batch(n: int = 2, seed: int = 0) -> dict[str, tf.Tensor]:
    rng = np.random.default_rng(seed)
    return {d: tf.constant(rng.uniform(-1, 1, (n, SIZE, SIZE, 3)), tf.float32) for d in ("x_a", "x_b")}


def _paths(layers: list) -> set[str]:
    return {v.path for layer in layers for v in layer.trainable_variables}


def _network_paths(net, domain: str) -> set[str]:
    return _paths(net.private_layers(domain) + net.shared)


def test_shapes_latent_and_instance_norm():
    config = tiny_translation_config(**OFFICIAL_GENERATOR)  # the official networks: instance norm throughout
    model = build_model(config)
    x = _batch(3)
    z = model.encode(x["x_a"], "a")
    # 7x7 conv, two stride-2 downsamplings: a spatial latent of 4 * gen_ch channels.
    assert z.shape == (3, SIZE // 4, SIZE // 4, 4 * config.model.gen_ch)
    out = model(x)
    assert out["a_to_b"].shape == (3, SIZE, SIZE, 3) and out["a_to_b"].dtype == tf.float32
    assert float(tf.reduce_max(tf.abs(out["a_to_b"]))) <= 1.0
    # Patch discriminator: 2 stride-2 layers -> 4x4 logits per image.
    assert model.discriminate(x["x_b"], "b").shape == (3, (SIZE // 4) ** 2)
    assert len(model.encoder.private_a) == 1 + 2 + 1 and isinstance(model.encoder.shared[0], ResidualBlock)
    assert isinstance(model.generator.shared[0], ResidualBlock)
    norms = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.GroupNormalization)]
    # Instance norm: groups=-1 becomes one group per channel when built.
    assert norms and all(n.groups == n.gamma.shape[0] if n.scale else n.groups == n.beta.shape[0] for n in norms)
    assert all(n.epsilon == 1e-5 for n in norms)


def test_shared_residual_blocks_are_one_object_for_both_domains():
    model = build_model(tiny_translation_config())
    for net in (model.encoder, model.generator):
        a, b = _network_paths(net, "a"), _network_paths(net, "b")
        assert a & b == _paths(net.shared) and _paths(net.shared)
    assert not _network_paths(model.discriminator, "a") & _network_paths(model.discriminator, "b")
    shared = [v for layer in model.encoder.shared + model.generator.shared for v in layer.trainable_variables]
    x = _batch()
    for domain in ("a", "b"):  # both domains' VAEs run through (and train) the shared blocks
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(model.translate(x[f"x_{domain}"], domain, domain, training=True))
        assert all(g is not None for g in tape.gradient(loss, shared))


# One down-sampling with both residual blocks shared: the variant that never learned the photo task
# (docs/translation.md, "Fidelity").
DOWN1_SHARED_RESIDUAL_BLOCKS = {"model.n_downsample": 1, "model.shared_encoder_layers": 2,
                                "model.shared_generator_layers": 2}

# Each ablation of the paper as config switches: (overrides, expected shared layers (E, G, D)).
ABLATIONS = {
    "default": ({}, (1, 1, 0)),
    "no_sharing": ({"model.shared_encoder_layers": 0, "model.shared_generator_layers": 0}, (0, 0, 0)),
    "share_more": ({"model.shared_encoder_layers": 3, "model.shared_generator_layers": 4,
                    "model.shared_discriminator_layers": 2}, (3, 4, 2)),
    "share_all_but_input": ({"model.shared_encoder_layers": 4, "model.shared_generator_layers": 5}, (4, 5, 0)),
    "deeper_d": ({"model.dis_layers": 3}, (1, 1, 0)),
    "recon_weight": ({"loss.recon": 10.0}, (1, 1, 0)),
    "cyclegan": ({"model.share_weights": False, "loss.recon_stream": False}, (0, 0, 0)),
    "no_cycle": ({"loss.cycle": False}, (1, 1, 0)),
    "multiscale_lsgan": ({"model.dis_scales": 2, "loss.gan_type": "lsgan"}, (1, 1, 0)),
    # The fidelity switches (docs/translation.md, "Fidelity").
    "resize_conv": ({"model.upsample": "resize_conv"}, (1, 1, 0)),
    "layer_norm_decoder": ({"model.decoder_norm": "layer"}, (1, 1, 0)),
    "no_decoder_norm": ({"model.decoder_norm": "none"}, (1, 1, 0)),
    "layer_norm_encoder": ({"model.encoder_norm": "layer"}, (1, 1, 0)),
    "he_init": ({"model.gen_init": "he"}, (1, 1, 0)),
    "edge": ({"loss.edge": 10.0}, (1, 1, 0)),
    "official_generator": (OFFICIAL_GENERATOR, (1, 1, 0)),
    "down1_shared_residual_blocks": (DOWN1_SHARED_RESIDUAL_BLOCKS, (2, 2, 0)),
}


@pytest.mark.parametrize("name", list(ABLATIONS))
def test_ablation_switch_builds_shares_and_trains(name):
    overrides, (enc, gen, dis) = ABLATIONS[name]
    config = tiny_translation_config(**overrides)
    model = build_model(config)
    assert (len(model.encoder.shared), len(model.generator.shared), len(model.discriminator.shared)) == (enc, gen,
                                                                                                         dis)
    # Every variable exists once, however many layers are shared.
    variables = model.trainable_variables
    assert len({v.path for v in variables}) == len(variables)
    before = [v.numpy().copy() for v in model.g_variables + model.d_variables]
    for seed in range(2):  # eagerly: tracing the step would cost more than running it
        logs = model.train_step(_batch(seed=seed))
    assert set(logs) == set(term_names(config.loss))
    assert all(np.isfinite(float(v)) for v in logs.values())
    after = model.g_variables + model.d_variables
    assert all(not np.array_equal(b, a.numpy()) for b, a in zip(before, after, strict=True))
    if name == "cyclegan":
        assert "recon_l1" not in logs and "cycle_l1" in logs
    if name == "no_cycle":
        assert "cycle_l1" not in logs and "recon_l1" in logs
    if name == "edge":
        assert logs["edge"] > 0
    if name == "deeper_d":
        assert model.discriminate(_batch()["x_a"], "a").shape == (2, (SIZE // 8) ** 2)


def test_multiscale_discriminator_sees_pooled_inputs():
    model = build_model(tiny_translation_config(**{"model.dis_scales": 2}))
    d_a, d_b = model.discriminators.pass_rows({"real": _batch()["x_a"]}, {"real": _batch()["x_b"]}, training=False)
    for logits in (d_a.logits("real"), d_b.logits("real")):
        assert [x.shape for x in logits] == [(2, 16), (2, 4)]  # 16 px -> 4x4 patches, 8 px -> 2x2
    assert len(model.coarse_discriminators) == 1
    coarse = {v.path for v in model.coarse_discriminators[0].trainable_variables}
    assert coarse <= {v.path for v in model.d_variables} and not coarse & _paths(model.discriminator.private_a)


def test_lsgan_and_bce_losses_differ_on_the_same_logits():
    from unit_tf import losses

    real, fake = tf.constant([[2.0, 0.0]]), tf.constant([[-1.0, 1.0]])
    assert float(losses.discriminator_gan_loss(real, fake, "lsgan")) == pytest.approx((1 + 1) / 2 + (1 + 1) / 2)
    bce = float(losses.discriminator_gan_loss(real, fake, "bce"))
    assert bce == pytest.approx(float(np.mean(np.log1p(np.exp([-2.0, 0.0])) + np.log1p(np.exp([-1.0, 1.0])))))
    # Multi-scale: the sum of each scale's mean.
    both = float(losses.generator_gan_loss([fake, tf.constant([[3.0]])], "lsgan"))
    assert both == pytest.approx((4 + 0) / 2 + 4)


@pytest.mark.parametrize("overrides, message", [
    ({"model.shared_encoder_layers": 6}, "model.shared_encoder_layers must be between 0 and 5"),
    ({"model.dis_layers": 5}, "needs inputs of at least 32 px"),
    ({"model.image_size": 18}, r"divisible by 2\^model.n_downsample"),
    ({"loss.gan_type": "wgan"}, "loss.gan_type must be one of bce, lsgan"),
    ({"loss.recon_stream": False, "loss.gan_recon_stream": True}, "needs the reconstruction stream"),
])
def test_bad_translation_settings_are_one_clear_error(overrides, message):
    with pytest.raises(UserError, match=message):
        build_model(tiny_translation_config(**overrides))


def test_residual_model_round_trips_through_get_config():
    model = build_model(tiny_translation_config(**{"model.dis_scales": 2}))
    clone = UNIT.from_config(model.get_config())
    assert clone.unit_config == model.unit_config
    assert len(clone.weights) == len(model.weights)
    block = model.encoder.shared[0]
    assert ResidualBlock.from_config(block.get_config()).get_config() == block.get_config()


def test_encoder_norm_switch_keeps_the_initial_kernels():
    """model.encoder_norm draws nothing random: the same seed starts every kernel at the same values, so a
    seed's runs with and without encoder norms differ by the norms alone (docs/translation.md, "Seeds")."""

    def kernels(norm: str) -> dict[str, np.ndarray]:
        keras.utils.set_random_seed(2)
        model = build_model(tiny_translation_config(**{"model.encoder_norm": norm}))
        return {w.path: w.numpy() for w in model.weights if w.path.endswith("kernel")}

    with_norms, without = kernels("layer"), kernels("none")
    assert with_norms.keys() == without.keys() and len(with_norms) > 20
    assert all(np.array_equal(with_norms[k], without[k]) for k in with_norms)


def test_translation_presets_use_the_fidelity_defaults():
    from unit_tf.config import FIDELITY_DEFAULTS

    assert (FIDELITY_DEFAULTS["model.encoder_norm"], FIDELITY_DEFAULTS["model.decoder_norm"]) == ("layer", "layer")
    for name in ("small", "translation_128", "translation_256"):
        config = UNITConfig(preset=name)
        apply_overrides(config, PRESETS[name])
        assert config.model.upsample == FIDELITY_DEFAULTS["model.upsample"] == "resize_conv"
        # `small` alone has norm-free encoders and decoders (measured at 32 px over seeds); the larger presets
        # keep the layer norms.
        expected = "none" if name == "small" else "layer"
        assert (config.model.encoder_norm, config.model.decoder_norm) == (expected, expected)
        # The official init everywhere; half the paper's latent noise in `small` (measured over seeds).
        assert (config.model.gen_init, config.model.latent_noise_std) == ("gaussian",
                                                                          0.5 if name == "small" else 1.0)
    # The dataclass defaults (what a config.json written before the switches existed resolves to) stay official.
    assert (UNITConfig().model.upsample, UNITConfig().model.encoder_norm, UNITConfig().loss.edge) == (
        "transposed", "instance", 0.0)


def test_translation_presets():
    # The paper's two down-samplings at 128 / 256 px; `small` one (docs/translation.md, "Fidelity"). Every
    # preset shares the paper's one encoder and one generator layer.
    for name, size, layers, down in (("translation_256", 256, 6, 2), ("translation_128", 128, 5, 2),
                                     ("small", 32, 3, 1)):
        config = UNITConfig(preset=name)
        apply_overrides(config, PRESETS[name])
        assert (config.model.image_size, config.model.dis_layers, config.model.architecture) == (size, layers,
                                                                                                "residual")
        assert config.model.gen_ch * 2 ** config.model.n_downsample >= 4
        assert (config.model.n_downsample, config.model.shared_encoder_layers,
                config.model.shared_generator_layers) == (down, 1, 1)
    paper = UNITConfig(preset="translation_256")
    apply_overrides(paper, PRESETS["translation_256"])
    loss, opt = paper.loss, paper.optimizer
    assert (loss.gan, loss.kl, loss.recon, loss.cycle_kl, loss.cycle_recon) == (10, 0.1, 100, 0.1, 100)
    assert (paper.data.batch_size, opt.learning_rate, opt.beta_1, opt.beta_2, opt.weight_decay) == (
        1, 1e-4, 0.5, 0.999, 1e-4)
    assert [translation_preset(s) for s in (32, 64, 96, 128, 256, None)] == [
        "small", "small", "translation_128", "translation_128", "translation_256", "translation_256"]


FIDELITY = {"resize_conv": {"model.upsample": "resize_conv"}, "layer_norm": {"model.decoder_norm": "layer"},
            "no_norm": {"model.decoder_norm": "none", "model.encoder_norm": "none"}, "edge": {"loss.edge": 10.0},
            "encoder_layer_norm": {"model.encoder_norm": "layer"}, "one_downsampling": {"model.n_downsample": 1},
            "he_init": {"model.gen_init": "he", "model.decoder_norm": "none", "model.encoder_norm": "none"},
            "down1_shared_residual_blocks": DOWN1_SHARED_RESIDUAL_BLOCKS}


@pytest.mark.parametrize("name", list(FIDELITY))
def test_fidelity_switch_serializes_and_exports(name, tmp_path):
    from unit_tf.export import export_model

    model = build_model(tiny_translation_config(**FIDELITY[name]))
    model.train_step(_batch())
    clone = UNIT.from_config(model.get_config())
    assert clone.unit_config == model.unit_config
    clone.build()
    for source, target in zip(model.weights, clone.weights, strict=True):
        target.assign(source)
    x = _batch(seed=3)["x_a"]
    np.testing.assert_allclose(clone.translate(x, "a", "b").numpy(), model.translate(x, "a", "b").numpy(), atol=1e-6)
    served = tf.saved_model.load(str(export_model(model, tmp_path / "unit"))).signatures["a_to_b"]
    wide = np.random.default_rng(1).uniform(0, 1, (1, 16, 24, 3)).astype(np.float32)
    y = served(images=tf.constant(wide))["images"].numpy()
    expected = (model.translate_any_size(wide * 2 - 1, "a", "b").numpy() + 1) / 2
    assert y.shape == (1, 16, 24, 3)
    np.testing.assert_allclose(y, expected.clip(0, 1), atol=1e-5)


def _layers_of(net, kind) -> list:
    return [layer for layer in net._flatten_layers() if isinstance(layer, kind)]


def test_generator_switches_build_the_chosen_layers():
    official = build_model(tiny_translation_config(**OFFICIAL_GENERATOR))
    official(_batch())
    assert len(_layers_of(official.generator, keras.layers.Conv2DTranspose)) == 2 * 2 - 0  # 2 per domain, private
    assert not _layers_of(official.generator, keras.layers.UpSampling2D)
    ours = build_model(tiny_translation_config(**{"model.upsample": "resize_conv", "model.decoder_norm": "layer",
                                                  "model.encoder_norm": "instance"}))
    ours(_batch())
    assert not _layers_of(ours.generator, keras.layers.Conv2DTranspose)
    assert len(_layers_of(ours.generator, keras.layers.UpSampling2D)) == 2 * 2
    gen_norms = _layers_of(ours.generator, keras.layers.GroupNormalization)
    assert gen_norms and all(n.groups == 1 and n.scale for n in gen_norms)  # layer norm, per-channel affine
    enc_norms = _layers_of(ours.encoder, keras.layers.GroupNormalization)  # the encoder follows its own switch
    assert enc_norms and all(n.groups == n.beta.shape[0] and not n.scale for n in enc_norms)
    bare = build_model(tiny_translation_config(**{"model.decoder_norm": "none"}))
    bare(_batch())
    assert not _layers_of(bare.generator, keras.layers.GroupNormalization)


def test_he_init_scales_the_generator_weights_by_fan_in():
    # He: std sqrt(2 / fan_in) in every encoder / generator conv but the output conv, which stays N(0, 0.02)
    # like the official init (a He-scaled output conv starts tanh near saturation).
    for init in ("gaussian", "he"):
        model = build_model(tiny_translation_config(**{"model.gen_init": init, "model.gen_ch": 16}))
        model(_batch())
        for net in (model.encoder, model.generator):
            kernels = [w for w in net.weights if w.path.endswith("kernel")]
            assert kernels
            for kernel in kernels:
                fan_in = int(np.prod(kernel.shape[:-1]))
                output_conv = kernel.shape[-1] == 3 and kernel.shape[0] == 1
                expected = 0.02 if init == "gaussian" or output_conv else np.sqrt(2.0 / fan_in)
                assert np.std(kernel.numpy()) == pytest.approx(expected, rel=0.25), (init, kernel.path)


def test_layer_norm_keeps_a_flat_colour_that_instance_norm_erases():
    from unit_tf.layers import ConvBlock

    # A flat tinted image: per channel a different constant. Instance norm removes every channel's own mean, so
    # all that is left of the colour is the offset (zero at init); layer norm keeps the channels' differences.
    tint = tf.constant(np.broadcast_to([0.9, 0.2, -0.5], (1, 8, 8, 3)), tf.float32)
    identity = keras.initializers.Identity()
    kernel = lambda shape, dtype=None: tf.reshape(identity((3, 3), dtype), shape)  # noqa: E731  1x1 identity conv
    outs = {norm: ConvBlock(3, 1, norm=norm, kernel_initializer=kernel, fast_paths="off")(tint).numpy()[0, 4, 4]
            for norm in ("instance", "layer")}
    np.testing.assert_allclose(outs["instance"], 0.0, atol=1e-3)
    assert outs["layer"][0] > outs["layer"][1] > outs["layer"][2] and outs["layer"][0] - outs["layer"][2] > 1.0


def test_resize_conv_maps_a_flat_input_to_a_flat_output_where_transposed_makes_a_checkerboard():
    from unit_tf.layers import ConvBlock

    flat = tf.ones((1, 8, 8, 4))
    init = keras.initializers.RandomNormal(0.0, 0.5, seed=0)
    resize = ConvBlock(4, 3, padding=1, upsample=2, kernel_initializer=init, fast_paths="off")(flat).numpy()
    transposed = ConvBlock(4, 4, strides=2, padding=1, transpose=True, kernel_initializer=init,
                           fast_paths="off")(flat).numpy()
    assert resize.shape == transposed.shape == (1, 16, 16, 4)
    inner = (slice(None), slice(2, -2), slice(2, -2))  # away from the zero-padded border
    assert np.ptp(resize[inner], axis=(1, 2)).max() < 1e-5
    # The transposed conv's stride-2 overlap gives every 2x2 cell the same four different values.
    cells = transposed[inner]
    assert np.ptp(cells, axis=(1, 2)).min() > 0.1
    np.testing.assert_allclose(cells[:, :-2], cells[:, 2:], atol=1e-5)


def test_edge_loss_prices_edges_not_flat_offsets():
    from unit_tf.losses import edge_loss

    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (2, 8, 9, 3)).astype(np.float32)
    y = rng.uniform(-1, 1, (2, 8, 9, 3)).astype(np.float32)
    expected = (np.abs(np.diff(x, axis=1) - np.diff(y, axis=1)).mean()
                + np.abs(np.diff(x, axis=2) - np.diff(y, axis=2)).mean())
    assert float(edge_loss(x, y)) == pytest.approx(expected, rel=1e-5)
    assert float(edge_loss(x, x + 0.3)) == pytest.approx(0.0, abs=1e-6)  # a flat offset has the same edges
    step = np.zeros((1, 8, 8, 1), np.float32)
    step[:, :, 4:] = 1.0
    blurred = step.copy()
    blurred[:, :, 3:5] = 0.5  # the same step spread over two pixels
    assert float(edge_loss(step, blurred)) > 0.1


def test_edge_term_needs_an_image_stream():
    with pytest.raises(UserError, match="loss.edge sharpens"):
        build_model(tiny_translation_config(**{"loss.edge": 1.0, "loss.recon_stream": False, "loss.cycle": False}))


@pytest.mark.parametrize("preset", ["small", "photo_64", "translation_128", "translation_256"])
def test_official_values_rebuild_the_official_generators(preset):
    config = UNITConfig(preset=preset)
    apply_overrides(config, {**PRESETS[preset], **OFFICIAL_GENERATOR, "model.image_size": 16, "model.dis_layers": 2})
    config.model.channels_a = config.model.channels_b = 3
    model = build_model(config)
    model(_batch())
    assert config.loss.edge == 0.0 and "edge" not in term_names(config.loss)
    transposed = _layers_of(model.generator, keras.layers.Conv2DTranspose)
    assert len(transposed) == 2 * config.model.n_downsample == 4
    assert (config.model.shared_encoder_layers, config.model.shared_generator_layers) == (1, 1)
    assert all(t.kernel_size == (4, 4) and t.strides == (2, 2) for t in transposed)
    assert not _layers_of(model.generator, keras.layers.UpSampling2D)
    norms = _layers_of(model.generator, keras.layers.GroupNormalization)
    assert norms and all(n.groups == n.beta.shape[0] and not n.scale for n in norms)  # instance norm, no scale
    enc_norms = _layers_of(model.encoder, keras.layers.GroupNormalization)
    assert enc_norms and all(n.groups == n.beta.shape[0] and not n.scale for n in enc_norms)


def test_generator_switches_are_for_the_residual_networks_only():
    from unit_tf.config import validate

    for key, value in (("upsample", "resize_conv"), ("encoder_norm", "layer"), ("decoder_norm", "layer"),
                       ("gen_init", "he")):
        config = UNITConfig()  # the digit networks
        setattr(config.model, key, value)
        with pytest.raises(UserError, match="choose the residual translation networks"):
            validate(config)
