"""The six UNIT networks as three coupled pairs: E1/E2, G1/G2, D1/D2.

A `CoupledNetwork` holds each domain's private layers and ONE list of shared layer objects that both
domains call. Encoders and discriminators run private -> shared (they share their last layers),
generators run shared -> private (they share their first layers) — the shared-latent assumption.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import tensorflow as tf

from unit_tf.config import ARCHITECTURES, ModelConfig, check_residual_geometry
from unit_tf.errors import UserError
from unit_tf.layers import PACKAGE, ConvBlock, ResidualBlock

DOMAINS = ("a", "b")


@keras.saving.register_keras_serializable(PACKAGE)
class CoupledNetwork(keras.layers.Layer):
    """One network per domain, built from private layers and a shared list of layer objects.

    shared_first=False: x -> private[domain] -> shared   (encoders, discriminators)
    shared_first=True:  x -> shared -> private[domain]   (generators)
    """

    def __init__(
        self,
        private_a: list[keras.layers.Layer],
        private_b: list[keras.layers.Layer],
        shared: list[keras.layers.Layer],
        shared_first: bool,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.private_a = list(private_a)
        self.private_b = list(private_b)
        self.shared = list(shared)
        self.shared_first = shared_first

    def private_layers(self, domain: str) -> list[keras.layers.Layer]:
        if domain not in DOMAINS:
            raise ValueError(f"domain must be 'a' or 'b', got {domain!r}")
        return self.private_a if domain == "a" else self.private_b

    def run_private(self, x: tf.Tensor, domain: str, training: bool | None = None) -> tf.Tensor:
        for layer in self.private_layers(domain):
            x = layer(x, training=training)
        return x

    def run_shared(self, x: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        for layer in self.shared:
            x = layer(x, training=training)
        return x

    def call(self, x: tf.Tensor, domain: str = "a", training: bool | None = None) -> tf.Tensor:
        """The whole network of one domain (E_domain, G_domain or D_domain)."""
        if self.shared_first:
            return self.run_private(self.run_shared(x, training), domain, training)
        return self.run_shared(self.run_private(x, domain, training), training)

    def build(self, input_shape: tuple) -> None:
        # Layers build on first call; tracing both domains creates every variable.
        pass

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        serialize = keras.saving.serialize_keras_object
        config.update(
            private_a=[serialize(layer) for layer in self.private_a],
            private_b=[serialize(layer) for layer in self.private_b],
            shared=[serialize(layer) for layer in self.shared],
            shared_first=self.shared_first,
        )
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> CoupledNetwork:
        config = dict(config)
        for key in ("private_a", "private_b", "shared"):
            config[key] = [keras.saving.deserialize_keras_object(c) for c in config[key]]
        return cls(**config)


LayerSpec = dict[str, Any]  # a layer's constructor arguments; "kind" picks the class (default "conv")
LAYER_KINDS: dict[str, type[keras.layers.Layer]] = {"conv": ConvBlock, "residual": ResidualBlock}


def _layer(spec: LayerSpec, name: str) -> keras.layers.Layer:
    spec = dict(spec)
    return LAYER_KINDS[spec.pop("kind", "conv")](**spec, name=name)


def _couple(
    name: str,
    specs: Callable[[str], list[LayerSpec]],
    n_shared: int,
    shared_first: bool,
    setting: str,
    inputs_differ: bool = False,
) -> CoupledNetwork:
    """Build a CoupledNetwork from a per-domain layer list; the shared layers are built ONCE.

    `specs(domain)` gives each layer's ConvBlock arguments; shared layers must be identical for both.
    """
    spec_a, spec_b = specs("a"), specs("b")
    depth = len(spec_a)
    if not 0 <= n_shared <= depth:
        raise UserError(f"{setting} must be between 0 and {depth}, got {n_shared}")
    shared_idx = range(0, n_shared) if shared_first else range(depth - n_shared, depth)
    def shape_of(spec: LayerSpec) -> LayerSpec:  # initializers do not decide whether a layer can be shared
        return {k: v for k, v in spec.items() if not k.endswith("_initializer")}

    for i in shared_idx:
        if shape_of(spec_a[i]) != shape_of(spec_b[i]) or (i == 0 and inputs_differ):
            raise UserError(
                f"{setting}={n_shared} would share layer {i} of {name}, whose shape differs between "
                f"the domains (their channel counts differ); use at most {n_shared - 1}"
            )
    private: dict[str, list[keras.layers.Layer]] = {d: [] for d in DOMAINS}
    shared: list[keras.layers.Layer] = []
    for i in range(depth):
        if i in shared_idx:
            shared.append(_layer(spec_a[i], f"{name}_shared_{i}"))
        else:
            for domain, spec in (("a", spec_a), ("b", spec_b)):
                private[domain].append(_layer(spec[i], f"{name}_{domain}_{i}"))
    return CoupledNetwork(private["a"], private["b"], shared, shared_first=shared_first, name=name)


def _digit_encoder_specs(cfg: ModelConfig) -> list[LayerSpec]:
    """Official CoVAE32x32 encoder: 5x5/2, 5x5/2, (size/4)x(size/4) valid (-> 1x1), 1x1, 1x1 mean."""
    c = cfg.gen_ch
    init = keras.initializers.RandomNormal(0.0, 0.02)  # official gaussian_weights_init
    bn = dict(
        norm="batch",
        activation="leaky_relu",
        leaky_slope=cfg.leaky_slope,
        bn_momentum=cfg.bn_momentum,
        bn_epsilon=cfg.bn_epsilon,
        kernel_initializer=keras.initializers.serialize(init),
        fast_paths=cfg.fast_paths,
    )
    mean_init = keras.initializers.serialize(keras.initializers.RandomNormal(0.0, 0.002))
    return [
        dict(filters=c, kernel_size=5, strides=2, padding=2, **bn),
        dict(filters=2 * c, kernel_size=5, strides=2, padding=2, **bn),
        dict(filters=4 * c, kernel_size=cfg.image_size // 4, **bn),
        dict(filters=8 * c, kernel_size=1, **bn),
        # Latent mean of q(z|x) (official GaussianVAE2D.en_mu, initialized N(0, 0.002)).
        dict(filters=8 * c, kernel_size=1, kernel_initializer=mean_init, bias_initializer=mean_init,
             fast_paths=cfg.fast_paths),
    ]


def _digit_generator_specs(cfg: ModelConfig, out_channels: int) -> list[LayerSpec]:
    """Official CoVAE32x32 decoder: 4x4/2 transposed convs 1 -> 4 -> 8 -> 16 -> 32, then 1x1 + tanh."""
    c = cfg.gen_ch
    init = keras.initializers.serialize(keras.initializers.RandomNormal(0.0, 0.02))
    bn = dict(
        transpose=True,
        norm="batch",
        activation="leaky_relu",
        leaky_slope=cfg.leaky_slope,
        bn_momentum=cfg.bn_momentum,
        bn_epsilon=cfg.bn_epsilon,
        kernel_initializer=init,
        fast_paths=cfg.fast_paths,
    )
    return [
        dict(filters=8 * c, kernel_size=4, strides=2, padding=0, **bn),
        dict(filters=4 * c, kernel_size=4, strides=2, padding=1, **bn),
        dict(filters=2 * c, kernel_size=4, strides=2, padding=1, **bn),
        dict(filters=c, kernel_size=4, strides=2, padding=1, **bn),
        dict(filters=out_channels, kernel_size=1, activation="tanh", kernel_initializer=init,
             fast_paths=cfg.fast_paths),
    ]


# Official xavier_weights_init for discriminators: Xavier-uniform with gain sqrt(2), bias 0.1.
def _dis_initializers() -> LayerSpec:
    init = keras.initializers.VarianceScaling(2.0, mode="fan_avg", distribution="uniform")
    return dict(kernel_initializer=keras.initializers.serialize(init),
                bias_initializer=keras.initializers.serialize(keras.initializers.Constant(0.1)))


# Official CoDis32x32 (DA) dropout after each of the four conv blocks.
DIS_DROPOUT = (0.1, 0.3, 0.5, 0.5)


def _digit_discriminator_specs(cfg: ModelConfig) -> list[LayerSpec]:
    """Official CoDis32x32: four (5x5 conv, ReLU, 2x2 max-pool) blocks and a 2x2 real/fake logit head."""
    d = cfg.dis_ch
    drop = DIS_DROPOUT if cfg.dis_dropout else (0.0,) * 4
    block = dict(kernel_size=5, padding=2, activation="relu", pool=2, fast_paths=cfg.fast_paths,
                 **_dis_initializers())
    return [
        dict(filters=d, dropout=drop[0], **block),
        dict(filters=2 * d, dropout=drop[1], **block),
        dict(filters=4 * d, dropout=drop[2], **block),
        dict(filters=8 * d, dropout=drop[3], **block),
        dict(filters=1, kernel_size=cfg.image_size // 16, fast_paths=cfg.fast_paths, **_dis_initializers()),
    ]


def build_classifier_head(cfg: ModelConfig) -> ConvBlock | None:
    """The digit classifier on the shared D trunk (official `conv_cl`): one layer object for both domains."""
    if cfg.num_classes <= 0:
        return None
    if cfg.shared_discriminator_layers < 2 or not cfg.share_weights:
        raise UserError(
            "model.num_classes > 0 puts a classifier on the SHARED high discriminator layers: set "
            f"model.shared_discriminator_layers >= 2 (got {cfg.shared_discriminator_layers}) and "
            f"model.share_weights=true (got {str(cfg.share_weights).lower()}), or num_classes=0"
        )
    return ConvBlock(filters=cfg.num_classes, kernel_size=cfg.image_size // 16, name="classifier_head",
                     fast_paths=cfg.fast_paths, **_dis_initializers())


def _gaussian_init() -> LayerSpec:
    """Official gaussian_weights_init: N(0, 0.02) conv weights."""
    return dict(kernel_initializer=keras.initializers.serialize(keras.initializers.RandomNormal(0.0, 0.02)))


def _generator_init(cfg: ModelConfig) -> LayerSpec:
    """Conv weights of the residual encoders / generators (model.gen_init) but the generators' output conv: the
    official N(0, 0.02), or He's fan-in scaled normal, which keeps the signal's scale through ReLU layers that no
    norm rescales."""
    return _gaussian_init() if cfg.gen_init == "gaussian" else dict(
        kernel_initializer=keras.initializers.serialize(keras.initializers.HeNormal()))


def _residual_encoder_specs(cfg: ModelConfig) -> list[LayerSpec]:
    """Official COCOResGen2 encoder: 7x7/1 conv + LeakyReLU, n_downsample 3x3/2 conv + IN + ReLU, then
    res_blocks instance-norm residual blocks (model.encoder_norm: another norm). Latent: [N, size / 2^n,
    size / 2^n, gen_ch * 2^n]."""
    c = cfg.gen_ch
    norm = dict(norm=cfg.encoder_norm, bn_epsilon=cfg.bn_epsilon, fast_paths=cfg.fast_paths,
                **_generator_init(cfg))
    specs = [dict(filters=c, kernel_size=7, padding=3, activation="leaky_relu", leaky_slope=cfg.leaky_slope,
                  fast_paths=cfg.fast_paths, **_generator_init(cfg))]
    for _ in range(cfg.n_downsample):
        c *= 2
        specs.append(dict(filters=c, kernel_size=3, strides=2, padding=1, activation="relu", **norm))
    return specs + [dict(kind="residual", filters=c, **norm) for _ in range(cfg.res_blocks)]


def _residual_generator_specs(cfg: ModelConfig, out_channels: int) -> list[LayerSpec]:
    """The encoder mirrored: res_blocks residual blocks, n_downsample 2x upsamplings + norm + ReLU, then a 1x1
    conv + tanh to the domain's channels. Official: 4x4/2 transposed convs, instance norm (model.upsample,
    model.decoder_norm choose otherwise)."""
    c = cfg.gen_ch * 2**cfg.n_downsample
    norm = dict(norm=cfg.decoder_norm, bn_epsilon=cfg.bn_epsilon, fast_paths=cfg.fast_paths,
                **_generator_init(cfg))
    up = (dict(kernel_size=4, strides=2, padding=1, transpose=True) if cfg.upsample == "transposed"
          else dict(kernel_size=3, padding=1, upsample=2))
    specs = [dict(kind="residual", filters=c, **norm) for _ in range(cfg.res_blocks)]
    for _ in range(cfg.n_downsample):
        c //= 2
        specs.append(dict(filters=c, activation="relu", **up, **norm))
    # The output conv keeps N(0, 0.02) under either init: He-scaled, it would start tanh near saturation.
    return specs + [dict(filters=out_channels, kernel_size=1, activation="tanh", fast_paths=cfg.fast_paths,
                         **_gaussian_init())]


def _residual_discriminator_specs(cfg: ModelConfig) -> list[LayerSpec]:
    """Official COCODis: dis_layers 3x3/2 conv + LeakyReLU(0.2) layers doubling the width, then a 1x1 conv
    to a patch of real/fake logits [N, size / 2^dis_layers, size / 2^dis_layers, 1]."""
    block = dict(kernel_size=3, strides=2, padding=1, activation="leaky_relu", leaky_slope=0.2,
                 fast_paths=cfg.fast_paths, **_gaussian_init())
    specs = [dict(filters=cfg.dis_ch * 2**i, **block) for i in range(cfg.dis_layers)]
    return specs + [dict(filters=1, kernel_size=1, fast_paths=cfg.fast_paths, **_gaussian_init())]


def _shared_counts(cfg: ModelConfig) -> tuple[int, int, int]:
    """(encoder, generator, discriminator) shared layer counts; none with model.share_weights=false."""
    if not cfg.share_weights:
        return 0, 0, 0
    return cfg.shared_encoder_layers, cfg.shared_generator_layers, cfg.shared_discriminator_layers


def _coupled_networks(cfg: ModelConfig, encoder: Callable[[], list[LayerSpec]],
                      generator: Callable[[int], list[LayerSpec]], discriminator: Callable[[], list[LayerSpec]],
                      scales: int = 1) -> dict[str, Any]:
    """E, G and D (one D per scale) of an architecture from its per-domain layer lists."""
    out = {"a": cfg.channels_a, "b": cfg.channels_b}
    differ = cfg.channels_a != cfg.channels_b
    n_enc, n_gen, n_dis = _shared_counts(cfg)
    # Built in this order (E, G, D): the order decides which initial weights a seed gives.
    nets: dict[str, Any] = {
        "encoder": _couple("encoder", lambda d: encoder(), n_enc, shared_first=False,
                           setting="model.shared_encoder_layers", inputs_differ=differ),
        "generator": _couple("generator", lambda d: generator(out[d]), n_gen, shared_first=True,
                             setting="model.shared_generator_layers"),
    }
    discriminators = [
        _couple(name, lambda d: discriminator(), n_dis, shared_first=False,
                setting="model.shared_discriminator_layers", inputs_differ=differ)
        for name in ["discriminator"] + [f"discriminator_scale{k}" for k in range(1, scales)]
    ]
    return {**nets, "discriminator": discriminators[0], "coarse_discriminators": discriminators[1:]}


def build_digit_networks(cfg: ModelConfig) -> dict[str, Any]:
    """The three coupled pairs of the paper's 32x32 digit architecture."""
    if cfg.image_size % 16:
        raise UserError(f"the digit networks need model.image_size divisible by 16, got {cfg.image_size}")
    if cfg.dis_scales != 1:
        raise UserError("the digit networks have one discriminator scale: set model.dis_scales=1")
    return _coupled_networks(cfg, lambda: _digit_encoder_specs(cfg),
                             lambda out: _digit_generator_specs(cfg, out), lambda: _digit_discriminator_specs(cfg))


def build_residual_networks(cfg: ModelConfig) -> dict[str, Any]:
    """The paper's translation networks (residual E/G with instance norm, stride-2 D, optional multi-scale)."""
    check_residual_geometry(cfg)
    return _coupled_networks(cfg, lambda: _residual_encoder_specs(cfg),
                             lambda out: _residual_generator_specs(cfg, out),
                             lambda: _residual_discriminator_specs(cfg), scales=cfg.dis_scales)


#: One builder per name of config.ARCHITECTURES, in its order.
BUILDERS: dict[str, Callable[[ModelConfig], dict[str, Any]]] = dict(
    zip(ARCHITECTURES, (build_digit_networks, build_residual_networks), strict=True))


def build_networks(cfg: ModelConfig) -> dict[str, Any]:
    """{"encoder", "generator", "discriminator": CoupledNetwork, "coarse_discriminators": [CoupledNetwork]}."""
    if cfg.architecture not in BUILDERS:
        raise UserError(
            f"unknown model.architecture '{cfg.architecture}'; choose one of: {', '.join(BUILDERS)}"
        )
    return BUILDERS[cfg.architecture](cfg)
