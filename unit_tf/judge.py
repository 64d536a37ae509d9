"""The domain judge: a small CNN that tells domain A's images from domain B's, trained on the real TRAINING
images of both domains only — never on a run's outputs — so it can score any run's translations of the test
images: the fraction of A -> B translations it calls B is the translation success.

One judge per data set and image size: it is a deterministic function of the training images, the recipe
(`JudgeRecipe`) and the seed, and is cached under a key made of all three, so every run of a data set is
judged by the same judge. Its penultimate features (global average pool) also serve KID where ImageNet
Inception-V3 weights are unavailable (reported as kid_judge_*, never as kid_*).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unit_tf.files import atomic_path, write_text

#: Bumped whenever the judge's code changes what a recipe trains, so stale cached judges are not reused.
JUDGE_VERSION = 1


@dataclass(frozen=True)
class JudgeRecipe:
    """How the judge is trained (docs/translation.md, "Photo metrics", says how it was chosen)."""

    width: int = 16  # channels of the first block; doubled per block up to 8 x width
    convs: int = 1  # 3x3 convolutions per block
    epochs: int = 40
    batch_size: int = 32
    learning_rate: float = 1e-3
    dropout: float = 0.5
    seed: int = 0
    max_images: int = 10000  # per domain: the first ones in the data set's order


def default_cache_dir() -> Path:
    """$UNIT_CACHE_DIR/judges, else ~/.cache/unit_tf/judges."""
    root = os.environ.get("UNIT_CACHE_DIR") or Path.home() / ".cache" / "unit_tf"
    return Path(root) / "judges"


def build_judge(image_size: int, channels: int, recipe: JudgeRecipe):  # -> keras.Model
    """Conv blocks (`recipe.convs` 3x3 conv + batch norm + ReLU, then 2x max pool) down to 4x4, global average
    pool (the `features` layer), dropout, one logit: > 0 means domain B."""
    import keras

    inputs = keras.Input((image_size, image_size, channels), name="images")
    x = inputs
    blocks = max(1, int(math.log2(max(image_size // 4, 1))))
    for i in range(blocks):
        filters = recipe.width * 2 ** min(i, 3)
        for _ in range(recipe.convs):
            x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
            x = keras.layers.BatchNormalization()(x)
            x = keras.layers.ReLU()(x)
        x = keras.layers.MaxPooling2D(2)(x)
    features = keras.layers.GlobalAveragePooling2D(name="features")(x)
    x = keras.layers.Dropout(recipe.dropout)(features)
    logits = keras.layers.Dense(1, name="logit")(x)
    return keras.Model(inputs, logits, name="judge")


def fingerprint(images_a: np.ndarray, images_b: np.ndarray, recipe: JudgeRecipe) -> str:
    """The cache key: a hash of both domains' training pixels, the recipe and the judge version."""
    digest = hashlib.sha256()
    for images in (images_a, images_b):
        digest.update(str(images.shape).encode())
        digest.update(np.ascontiguousarray(images).tobytes())
    digest.update(json.dumps({"recipe": dataclasses.asdict(recipe), "version": JUDGE_VERSION},
                             sort_keys=True).encode())
    return digest.hexdigest()[:20]


def _training_stream(images: np.ndarray, labels: np.ndarray, recipe: JudgeRecipe):  # -> tf.data.Dataset
    """Shuffled batches with a random horizontal flip and a random shift of up to size/16 px (reflect-padded),
    every random choice a stateless function of (seed, position): the judge is a function of the seed."""
    import tensorflow as tf

    from unit_tf.data.pipeline import shuffled_positions, to_model_range

    size, channels = images.shape[1], images.shape[-1]
    pad = max(1, size // 16)
    table, label_table = tf.constant(images), tf.constant(labels.reshape(-1, 1).astype(np.float32))

    def example(position: tf.Tensor, index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        key = tf.stack([tf.constant(recipe.seed, tf.int64), -1 - position])
        keys = tf.random.experimental.stateless_split(key, 2)
        x = tf.pad(to_model_range(tf.gather(table, index)), [[pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
        x = tf.image.stateless_random_crop(x, [size, size, channels], seed=keys[0])
        x = tf.image.stateless_random_flip_left_right(x, seed=keys[1])
        return x, tf.gather(label_table, index)

    return (shuffled_positions(len(images), recipe.seed).map(example, num_parallel_calls=tf.data.AUTOTUNE)
            .batch(recipe.batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE))


def train_judge(images_a: np.ndarray, images_b: np.ndarray, recipe: JudgeRecipe):  # -> keras.Model
    """Train a judge on uint8 images of domain A (label 0) and B (label 1), deterministically from recipe.seed."""
    import keras

    images = np.concatenate([images_a, images_b])
    labels = np.concatenate([np.zeros(len(images_a)), np.ones(len(images_b))])
    keras.utils.set_random_seed(recipe.seed)
    model = build_judge(images.shape[1], images.shape[-1], recipe)
    steps = max(1, len(images) // recipe.batch_size)
    # Cosine decay to 0: the last epochs settle the weights (a constant rate left the held-out accuracy of
    # successive epochs swinging by several points).
    rate = keras.optimizers.schedules.CosineDecay(recipe.learning_rate, steps * recipe.epochs)
    model.compile(optimizer=keras.optimizers.Adam(rate),
                  loss=keras.losses.BinaryCrossentropy(from_logits=True),
                  metrics=[keras.metrics.BinaryAccuracy(threshold=0.0, name="accuracy")])
    model.fit(_training_stream(images, labels, recipe), epochs=recipe.epochs, steps_per_epoch=steps, verbose=0)
    return model


class Judge:
    """A trained judge: P(domain B) and penultimate features of images in [-1, 1] (or uint8)."""

    def __init__(self, model, path: Path | None = None) -> None:  # model: keras.Model
        import keras

        self.model, self.path = model, path
        self.feature_model = keras.Model(model.inputs, model.get_layer("features").output)

    @staticmethod
    def _batches(images: np.ndarray, batch_size: int = 256):
        import tensorflow as tf

        from unit_tf.data.pipeline import to_model_range

        for start in range(0, len(images), batch_size):
            x = images[start:start + batch_size]
            yield to_model_range(x) if x.dtype == np.uint8 else tf.convert_to_tensor(x, tf.float32)

    def prob_b(self, images: np.ndarray) -> np.ndarray:
        """P(domain B) of each image."""
        import tensorflow as tf

        return np.concatenate([tf.sigmoid(self.model(x, training=False)).numpy()[:, 0]
                               for x in self._batches(images)])

    def features(self, images: np.ndarray) -> np.ndarray:
        return np.concatenate([self.feature_model(x, training=False).numpy() for x in self._batches(images)])


def load_or_train(images_a: np.ndarray, images_b: np.ndarray, recipe: JudgeRecipe | None = None,
                  cache_dir: str | Path | None = None, verbose: bool = True) -> Judge:
    """The cached judge of these training images and recipe, trained (and cached) on first use."""
    import keras

    recipe = recipe or JudgeRecipe()
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    images_a, images_b = images_a[:recipe.max_images], images_b[:recipe.max_images]
    key = fingerprint(images_a, images_b, recipe)
    path = cache / f"judge_{images_a.shape[1]}px_{key}.keras"
    if path.is_file():
        return Judge(keras.saving.load_model(path, compile=False), path)
    if verbose:
        print(f"Training the domain judge on {len(images_a)} + {len(images_b)} training images at "
              f"{images_a.shape[1]} px ({recipe.epochs} epochs; cached as {path})", file=sys.stderr, flush=True)
    start = time.time()
    model = train_judge(images_a, images_b, recipe)
    cache.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        model.save(tmp)
    write_text(path.with_suffix(".json"), json.dumps(
        {"recipe": dataclasses.asdict(recipe), "version": JUDGE_VERSION, "images_a": len(images_a),
         "images_b": len(images_b), "image_size": int(images_a.shape[1]),
         "seconds": round(time.time() - start, 1)}, indent=2) + "\n")
    return Judge(model, path)
