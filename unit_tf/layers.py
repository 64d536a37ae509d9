"""Building-block layers of the UNIT networks (serializable, PyTorch-equivalent padding)."""

from __future__ import annotations

import itertools
from typing import Any

import keras
import tensorflow as tf

from unit_tf import fast
from unit_tf.fast import conv_matmul
from unit_tf.fast.batch_norm import FusedBatchNormalization

PACKAGE = "unit_tf"
#: ConvBlock / ResidualBlock normalizations.
NORMS = ("none", "batch", "instance", "layer")


def _same_padding_matches(kernel_size: int, strides: int, padding: int, transpose: bool) -> bool:
    """Whether Keras' 'same' equals PyTorch's symmetric `padding` (TF pads asymmetrically otherwise)."""
    if transpose:
        return kernel_size - strides == 2 * padding
    return strides == 1 and kernel_size % 2 == 1 and padding == (kernel_size - 1) // 2


def replica_seed(generator: keras.random.SeedGenerator) -> tf.Tensor:
    """The generator's next stateless seed with the replica id folded in, so that replicas draw independent
    randomness (latent noise, dropout masks) for their shards of the batch; one replica: the seed itself."""
    seed = generator.next()
    context = tf.distribute.get_replica_context()
    replica = context.replica_id_in_sync_group if context is not None else 0
    return seed + tf.cast(tf.stack([0, replica]), seed.dtype)


def dropout(x: tf.Tensor, rate: float, seed: tf.Tensor) -> tf.Tensor:
    """Inverted dropout whose mask draws 16 random bits per element: half the Philox work of a float32
    uniform per element. The drop probability is rate rounded to a multiple of 2^-16 (0.1 -> 0.100006), and kept
    values are scaled by its inverse."""
    threshold = round(rate * 65536)
    size = tf.size(x)
    words = tf.random.stateless_uniform([(size + 1) // 2], seed, minval=None, maxval=None, dtype=tf.uint32)
    bits = tf.reshape(tf.reshape(tf.bitcast(words, tf.uint16), [-1])[:size], tf.shape(x))
    scale = tf.cast(65536 / (65536 - threshold), x.dtype)
    return tf.where(bits >= threshold, x * scale, tf.zeros_like(x))


# The six orders of three colour channels.
_CHANNEL_ORDERS = ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))


def colour_jitter(x: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Each channel of each image of [N, H, W, C] in [-1, 1] inverted (-x) with probability 1/2 and, with 3
    channels, the channels put in one of the six orders at random: the same digit in other colours and
    polarities (a channel inverted alone changes a digit's colour against its background, as MNIST-M's
    |digit - patch| blend does channel by channel)."""
    n, channels = tf.shape(x)[0], x.shape[-1]
    draws = tf.random.stateless_uniform([n, channels + 1], seed)
    sign = tf.where(draws[:, :channels] < 0.5, -1.0, 1.0)
    if channels == 3:
        order = tf.gather(tf.constant(_CHANNEL_ORDERS), tf.cast(draws[:, -1] * len(_CHANNEL_ORDERS), tf.int32))
        x = tf.gather(x, order, axis=3, batch_dims=1)
    return x * tf.cast(tf.reshape(sign, [-1, 1, 1, channels]), x.dtype)


def colour_variants(x: tf.Tensor) -> list[tf.Tensor]:
    """Every image `colour_jitter` can draw from [N, H, W, C] `x`, x itself first: each pattern of inverted
    channels and, with 3 channels, each channel order (2 variants of a gray image, 48 of a colour one)."""
    channels = x.shape[-1]
    orders = _CHANNEL_ORDERS if channels == 3 else (tuple(range(channels)),)
    variants = []
    for order in orders:
        reordered = x if order == tuple(range(channels)) else tf.gather(x, list(order), axis=3)
        for signs in itertools.product((1.0, -1.0), repeat=channels):
            variants.append(reordered if min(signs) > 0 else reordered * tf.constant(signs, x.dtype))
    return variants


@keras.saving.register_keras_serializable(PACKAGE)
class ConvBlock(keras.layers.Layer):
    """Optional nearest-neighbour upsampling -> conv (or transposed conv) -> optional norm -> activation ->
    optional max-pool -> optional dropout.

    `padding` is PyTorch's symmetric zero padding (a transposed conv crops it instead), so
    the official networks' shapes and alignments are reproduced exactly.

    `fast_paths` (`model.fast_paths`: "auto" | "off") decides, through `unit_tf.fast.enabled`, whether the conv
    may run as a matmul (`unit_tf.fast.conv_matmul`) and whether the batch norm is `FusedBatchNormalization`
    or Keras' own; both compute the same with the same variables, so it does not change what is saved.

    norm: "batch" | "instance" (per image and channel, no scale: official nn.InstanceNorm2d) | "layer" (per
    image over H, W and C with a per-channel scale and offset: MUNIT's decoder LayerNorm, which keeps each image's
    colour statistics across channels) | "none". `upsample` > 1 resizes (nearest) before the conv: the
    resize-convolution of Odena et al. 2016, which cannot make the checkerboard of a strided transposed conv.
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int,
        strides: int = 1,
        padding: int = 0,
        transpose: bool = False,
        norm: str = "none",
        activation: str = "none",
        leaky_slope: float = 0.01,
        pool: int = 1,
        bn_momentum: float = 0.9,
        bn_epsilon: float = 1e-5,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        dropout: float = 0.0,
        fast_paths: str = "auto",
        upsample: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if norm not in NORMS:
            raise ValueError(f"unknown norm {norm!r}")
        if activation not in ("none", "relu", "leaky_relu", "tanh"):
            raise ValueError(f"unknown activation {activation!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if upsample < 1 or (upsample > 1 and transpose):
            raise ValueError(f"upsample must be >= 1 and not combined with a transposed conv, got {upsample}")
        self.filters = filters
        self.kernel_size = kernel_size
        self.strides = strides
        self.padding = padding
        self.transpose = transpose
        self.norm = norm
        self.activation = activation
        self.leaky_slope = leaky_slope
        self.pool = pool
        self.bn_momentum = bn_momentum
        self.bn_epsilon = bn_epsilon
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.dropout = dropout
        self.fast_paths = fast_paths
        self.upsample = upsample
        self.use_fast_paths = fast.enabled(fast_paths)
        self.resize = (keras.layers.UpSampling2D(upsample, interpolation="nearest", name="resize")
                       if upsample > 1 else None)

        use_same = padding > 0 and _same_padding_matches(kernel_size, strides, padding, transpose)
        conv_cls = keras.layers.Conv2DTranspose if transpose else keras.layers.Conv2D
        self.pad = None
        self.crop = None
        if padding > 0 and not use_same:
            if transpose:
                self.crop = keras.layers.Cropping2D(padding, name="crop")
            else:
                self.pad = keras.layers.ZeroPadding2D(padding, name="pad")
        # A norm with a learned offset makes the conv bias redundant (official: affine=False + bias).
        self.conv = conv_cls(
            filters,
            kernel_size,
            strides=strides,
            padding="same" if use_same else "valid",
            use_bias=norm == "none",
            kernel_initializer=self.kernel_initializer,
            bias_initializer=self.bias_initializer,
            name="conv",
        )
        # synchronized=True: batch statistics over the GLOBAL batch under tf.distribute, so N replicas
        # compute exactly what one device computes (a no-op on a single device).
        batch_norm = FusedBatchNormalization if self.use_fast_paths else keras.layers.BatchNormalization
        self.bn = (
            batch_norm(momentum=bn_momentum, epsilon=bn_epsilon, scale=False, synchronized=True, name="bn")
            if norm == "batch"
            else None
        )
        # Instance norm (official nn.InstanceNorm2d, affine=False) = one group per channel; no
        # tensorflow-addons, which does not import with Keras 3.
        self.instance_norm = (
            keras.layers.GroupNormalization(groups=-1, epsilon=bn_epsilon, scale=False, name="instance_norm")
            if norm == "instance"
            else None
        )
        self.layer_norm = (
            keras.layers.GroupNormalization(groups=1, epsilon=bn_epsilon, name="layer_norm")
            if norm == "layer"
            else None
        )
        self.pooling = keras.layers.MaxPooling2D(pool, name="pool") if pool > 1 else None
        # Dropout with a SeedGenerator named after this block: its state variable has the same path in every
        # model built in the process (keras.layers.Dropout's generator is numbered globally), so checkpoints,
        # which key variables by path, restore into a second model of the same process.
        self.dropout_seed = keras.random.SeedGenerator(name=f"{self.name}_dropout") if dropout > 0 else None

    def build(self, input_shape: tuple) -> None:
        shape = tuple(input_shape)
        if self.resize is not None:
            shape = self.resize.compute_output_shape(shape)
        if self.pad is not None:
            self.pad.build(shape)
            shape = self.pad.compute_output_shape(shape)
        self.conv.build(shape)
        shape = self.conv.compute_output_shape(shape)
        if self.crop is not None:
            self.crop.build(shape)
            shape = self.crop.compute_output_shape(shape)
        for norm in (self.bn, self.instance_norm, self.layer_norm):
            if norm is not None:
                norm.build(shape)
        if self.pooling is not None:
            self.pooling.build(shape)

    def call(self, x: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        if self.resize is not None:
            x = self.resize(x)
        if self.pad is not None:
            x = self.pad(x)
        # Tiny maps (fast paths on): the same conv as one matmul. Its bias is added after the max-pool, if any:
        # max(x + b) = max(x) + b per channel exactly (rounding is monotonic), on pool^2 times fewer elements.
        # (oneDNN's conv adds its bias in the same kernel: only a matmul form's bias moves.)
        pooled = self.pooling is not None
        matmul = conv_matmul.convolve(self.conv, x, bias=not pooled) if self.use_fast_paths else None
        late_bias = matmul is not None and pooled and self.conv.use_bias
        x = self.conv(x) if matmul is None else matmul
        if self.crop is not None:
            x = self.crop(x)
        if self.bn is not None:
            x = self.bn(x, training=training)
        if self.instance_norm is not None:
            x = self.instance_norm(x)
        if self.layer_norm is not None:
            x = self.layer_norm(x)
        # Every activation here is non-decreasing, so it commutes with max-pooling: pooling first gives the
        # official conv -> activation -> pool exactly (values and gradients) on a quarter of the elements.
        if self.pooling is not None:
            x = self.pooling(x)
        if late_bias:
            x = tf.nn.bias_add(x, tf.cast(self.conv.bias, x.dtype))
        if self.activation == "relu":
            x = tf.nn.relu(x)
        elif self.activation == "leaky_relu":
            x = tf.nn.leaky_relu(x, alpha=self.leaky_slope)
        elif self.activation == "tanh":
            x = tf.tanh(x)
        if self.dropout_seed is not None and training:
            x = dropout(x, self.dropout, replica_seed(self.dropout_seed))
        return x

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        shape = tuple(input_shape)
        for layer in (self.resize, self.pad, self.conv, self.crop, self.pooling):
            if layer is not None:
                shape = layer.compute_output_shape(shape)
        return shape

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=self.kernel_size,
            strides=self.strides,
            padding=self.padding,
            transpose=self.transpose,
            norm=self.norm,
            activation=self.activation,
            leaky_slope=self.leaky_slope,
            pool=self.pool,
            bn_momentum=self.bn_momentum,
            bn_epsilon=self.bn_epsilon,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            bias_initializer=keras.initializers.serialize(self.bias_initializer),
            dropout=self.dropout,
            fast_paths=self.fast_paths,
            upsample=self.upsample,
        )
        return config


@keras.saving.register_keras_serializable(PACKAGE)
class ResidualBlock(keras.layers.Layer):
    """x + norm(conv3x3(ReLU(norm(conv3x3(x))))): the official INSResBlock of the translation networks."""

    def __init__(self, filters: int, norm: str = "instance", bn_epsilon: float = 1e-5,
                 kernel_initializer: Any = "glorot_uniform", fast_paths: str = "auto", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.filters = filters
        self.norm = norm
        self.bn_epsilon = bn_epsilon
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.fast_paths = fast_paths
        common = dict(kernel_size=3, padding=1, norm=norm, bn_epsilon=bn_epsilon,
                      kernel_initializer=self.kernel_initializer, fast_paths=fast_paths)
        self.conv1 = ConvBlock(filters, activation="relu", name="conv1", **common)
        self.conv2 = ConvBlock(filters, name="conv2", **common)

    def build(self, input_shape: tuple) -> None:
        if input_shape[-1] != self.filters:
            raise ValueError(f"a residual block of {self.filters} filters got {input_shape[-1]} channels")
        self.conv1.build(input_shape)
        self.conv2.build(self.conv1.compute_output_shape(input_shape))

    def call(self, x: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        return x + self.conv2(self.conv1(x, training=training), training=training)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return tuple(input_shape)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(filters=self.filters, norm=self.norm, bn_epsilon=self.bn_epsilon,
                      kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
                      fast_paths=self.fast_paths)
        return config


@keras.saving.register_keras_serializable(PACKAGE)
class CoordinateChannels(keras.layers.Layer):
    """Appends two channels holding the normalized pixel coordinates (i - H/2) / (H/2) and (j - W/2) / (W/2).

    Used by the domain-adaptation encoders (official `_create_xy_image`): channel 0 is the row
    coordinate, channel 1 the column coordinate, both in [-1, 1).
    """

    def call(self, x: tf.Tensor) -> tf.Tensor:
        shape = tf.shape(x)
        h, w = shape[1], shape[2]
        rows = (tf.cast(tf.range(h), x.dtype) - tf.cast(h, x.dtype) / 2) / (tf.cast(h, x.dtype) / 2)
        cols = (tf.cast(tf.range(w), x.dtype) - tf.cast(w, x.dtype) / 2) / (tf.cast(w, x.dtype) / 2)
        grid_r, grid_c = tf.meshgrid(rows, cols, indexing="ij")
        coords = tf.stack([grid_r, grid_c], axis=-1)[None]
        coords = tf.tile(coords, [shape[0], 1, 1, 1])
        return tf.concat([x, coords], axis=-1)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (*input_shape[:-1], input_shape[-1] + 2)
