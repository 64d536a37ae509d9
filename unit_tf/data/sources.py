"""A run's data, whatever the data set (digit pairs or translation images): the training stream, the
fixed sample images of the grids, and the test images of evaluation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from unit_tf.catalogue import DA_DATASET, is_image_dataset
from unit_tf.config import UNITConfig
from unit_tf.data import class_folders
from unit_tf.data.image_domains import ImagePair, load_image_pair
from unit_tf.data.pipeline import DomainData, load_pair, unpaired_batches, with_inverted
from unit_tf.errors import UserError

#: Test images per domain that evaluation of a translation data set uses by default.
EVAL_IMAGES = 256


def _image_pair(config: UNITConfig, train: bool = True) -> ImagePair:
    """The config's image domains; for evaluation (train=False) nothing is cached for training."""
    data = config.data
    return load_image_pair(data.dataset, config.model.image_size, data.domain_a, data.domain_b, data.attribute,
                           load_size=data.load_size, flip=data.flip, cache_mb=data.cache_mb if train else 0)


def _unlabelled(name: str, images: np.ndarray) -> DomainData:
    return DomainData(name, images, np.zeros(len(images), np.int64))


@dataclass
class DigitRunData:
    """A digit pair's labelled splits in memory (training images with the inverted copies the config asks
    for); `samples_*` are the first test images, uint8, of the sample grids."""

    config: UNITConfig
    train_a: DomainData
    train_b: DomainData
    test_a: DomainData
    test_b: DomainData
    samples_a: np.ndarray
    samples_b: np.ndarray

    def train_batches(self, start_step: int, source_labels: bool = False) -> tf.data.Dataset:
        """Endless {"x_a", "x_b"} (+ "y_a" with `source_labels`) batches of data.batch_size images per domain,
        from `start_step` on."""
        return unpaired_batches(self.train_a, self.train_b, self.config.data.batch_size, self.config.train.batch_seed,
                                start_step=start_step, source_labels=source_labels)


@dataclass
class ImageRunData:
    """A translation data set's two image domains (unlabelled); `samples_*` are uint8 test images of the
    sample grids."""

    config: UNITConfig
    pair: ImagePair
    samples_a: np.ndarray
    samples_b: np.ndarray

    def train_batches(self, start_step: int, source_labels: bool = False) -> tf.data.Dataset:
        """Endless {"x_a", "x_b"} batches of data.batch_size images per domain, from `start_step` on."""
        if source_labels:
            raise ValueError("translation images have no labels (config.validate refuses model.num_classes)")
        return self.pair.batches(self.config.data.batch_size, self.config.train.batch_seed, start_step)


RunData = DigitRunData | ImageRunData


def load_da_splits(config: UNITConfig, splits: tuple[str, ...] = ("test",)) -> list[tuple[DomainData, DomainData]]:
    """Dataset "da" in memory, (source, target) images for each of `splits`, each file decoded once. "train": the
    labelled source training images and the unlabelled target ones; "test": the source test split (its
    training images when it has none) and the labelled target test split (the target training images,
    unlabelled, when it has none)."""
    data, model = config.data, config.model
    files = class_folders.find(data.domain_a, data.domain_b, data.target_test)
    name_a, name_b = class_folders.domain_names(data.domain_a, data.domain_b)
    loaded: dict[int, DomainData] = {}

    def load(split: class_folders.Split, name: str, channels: int) -> DomainData:
        if id(split) not in loaded:
            loaded[id(split)] = class_folders.load_split(split, name, channels, model.image_size, files.class_names)
        return loaded[id(split)]

    result = []
    for split in splits:
        testing = split == "test"
        source = files.source_test if testing and files.source_test else files.source
        target = files.target_test if testing and files.target_test else files.target
        result.append((load(source, name_a, model.channels_a), load(target, name_b, model.channels_b)))
    return result


def load_labelled_splits(config: UNITConfig) -> tuple[DomainData, DomainData, DomainData, DomainData]:
    """A digit pair's or dataset "da"'s (train_a, train_b, test_a, test_b) in memory, the training images with
    the inverted copies the config asks for: what the warm-up, UNIT and the whole-budget source-only baseline
    all train on."""
    data, size = config.data, config.model.image_size
    if data.dataset == DA_DATASET:
        (train_a, train_b), (test_a, test_b) = load_da_splits(config, ("train", "test"))
    else:
        train_a, train_b = load_pair(data.dataset, "train", data.data_dir, size)
        test_a, test_b = load_pair(data.dataset, "test", data.data_dir, size)
    train_a = with_inverted(train_a) if data.invert_a else train_a
    train_b = with_inverted(train_b) if data.invert_b else train_b
    return train_a, train_b, test_a, test_b


def load_run_data(config: UNITConfig, sample_images: int) -> RunData:
    """Load (and check) the run's data before anything is written: digits and dataset "da" into memory, images
    indexed."""
    if is_image_dataset(config.data.dataset):
        pair = _image_pair(config)
        return ImageRunData(config, pair, pair.test_images("a", sample_images), pair.test_images("b", sample_images))
    train_a, train_b, test_a, test_b = load_labelled_splits(config)
    return DigitRunData(config, train_a, train_b, test_a, test_b, test_a.images[:sample_images],
                        test_b.images[:sample_images])


@dataclass
class EvalData:
    """What evaluation reads: both domains' images of the evaluated split (`a`, `b`; digits: with labels) and,
    for translation data sets, every training image of both domains (uint8, squared like the test images, no
    augmentation: what the domain judge learns from; None for digits)."""

    a: DomainData
    b: DomainData
    train_a: np.ndarray | None = None
    train_b: np.ndarray | None = None


def load_eval_data(config: UNITConfig, split: str = "test", data_dir: str | None = None,
                   limit: int | None = None) -> EvalData:
    """The evaluation images of a run's data, each folder scanned and decoded once. Digits and dataset "da"
    (see load_da_splits): both domains' images of `split` (at most `limit` per domain). Translation data: the
    test images (or each folder's own images when it has no test split), at most `limit` (default EVAL_IMAGES)
    per domain, and all training images."""
    if is_image_dataset(config.data.dataset):
        if split != "test":
            raise UserError(f"translation data sets are evaluated on their test images; drop --split {split}")
        pair = _image_pair(config, train=False)
        limit = limit or EVAL_IMAGES
        train_a, test_a = pair.train_and_test_images("a", limit)
        train_b, test_b = pair.train_and_test_images("b", limit)
        return EvalData(_unlabelled(pair.name_a, test_a), _unlabelled(pair.name_b, test_b), train_a, train_b)
    if config.data.dataset == DA_DATASET:
        (a, b), = load_da_splits(config, (split,))
    else:
        a, b = load_pair(config.data.dataset, split, data_dir or config.data.data_dir, config.model.image_size)
    if limit:
        a, b = (DomainData(d.name, d.images[:limit], None if d.labels is None else d.labels[:limit]) for d in (a, b))
    return EvalData(a, b)
