"""Translation domains from image folders and TFDS, as unpaired `tf.data` streams in the model's [-1, 1] range.

Data sets: see unit_tf.catalogue. "folders" has no test split: a domain's test images are its own first files
in sorted order; "folder:ROOT" without testA / testB tests on the train folders.

Preprocessing (the CycleGAN/UNIT convention): every image is decoded upright and made RGB, its shorter side
is resized (bilinear, antialiased) to `load_size` and it is centre-cropped square (unit_tf.data.image_files:
the translate command decodes and resizes the same way); training takes a random image_size crop and a
random horizontal flip, test images are resized to image_size and centre-cropped.

Determinism: folder streams and every source small enough for `cache_mb` are a pure function of (seed, step):
epoch e is the permutation stateless_shuffle(range(n), seed=(seed, e)) and the crop and flip of the image at
global position p use stateless ops seeded by (seed, p), so `start_step` resumes exactly where a run stopped.
Resuming a TFDS stream (a split too large for memory) reshuffles with a seed that includes the start step.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from unit_tf.catalogue import IMAGE_TFDS_HOSTS, check_image_dataset
from unit_tf.data import digits
from unit_tf.data.image_files import IMAGE_EXTENSIONS, decode_image, default_load_size, list_images, resize_shorter_side
from unit_tf.data.pipeline import DOMAIN_B_SEED_OFFSET, shuffled_positions, to_model_range
from unit_tf.errors import UserError

_SHUFFLE_BUFFER = 4096  # TFDS streams: encoded images held for shuffling
_WARN_NAMES = 5  # unreadable files named in the warning line


def _cycle_gan_names() -> list[str]:
    import tensorflow_datasets as tfds

    return [config.name for config in tfds.builder_cls("cycle_gan").BUILDER_CONFIGS]


def _celeb_a_attributes(builder: Any) -> list[str]:
    return sorted(builder.info.features["attributes"].keys())


def _tfds_builder(name: str) -> Any:
    """The TFDS builder (not prepared yet); its info and features come from code, no data is read."""
    import tensorflow_datasets as tfds

    return tfds.builder(name, data_dir=os.environ.get("TFDS_DATA_DIR"))


def check_tfds_names(dataset: str, attribute: str | None) -> None:
    """What only TFDS knows, checked before anything is downloaded: the `cycle_gan/<name>` config exists, the
    CelebA attribute is one of the data set's (from the builder's code; no data is read)."""
    if dataset.startswith("cycle_gan/"):
        name = dataset[len("cycle_gan/"):]
        choices = _cycle_gan_names()
        if name not in choices:
            raise UserError(f"unknown CycleGAN data set '{name}'; choose one of: {', '.join(choices)}")
    elif dataset == "celeb_a":
        _check_attribute(_tfds_builder("celeb_a"), attribute)  # type: ignore[arg-type]


def _check_attribute(builder: Any, attribute: str) -> None:
    names = _celeb_a_attributes(builder)
    if attribute not in names:
        raise UserError(f"unknown CelebA attribute '{attribute}'; choose one of: {', '.join(names)}")


# --- decoding and resizing (graph ops: run inside tf.data) ---


def decode_rgb(data: tf.Tensor) -> tf.Tensor:
    """Encoded image bytes -> uint8 [H, W, 3], decoded by `image_files.decode_image` (as the translate command
    decodes: EXIF orientation applied, gray, alpha and palettes made RGB); bytes it cannot decode fail the op,
    which the scans' ignore_errors() skips."""
    def decode(encoded: bytes | np.ndarray) -> np.ndarray:  # bytes in tf.data, a 0-d object array eagerly
        return decode_image(encoded if isinstance(encoded, bytes) else encoded.item(), 3)

    image = tf.numpy_function(decode, [data], tf.uint8, stateful=False)
    return tf.ensure_shape(image, [None, None, 3])


def square(image: tf.Tensor, size: int) -> tf.Tensor:
    """uint8 [H, W, C] -> uint8 [size, size, C]: shorter side resized to `size` (`image_files.resize_shorter_side`:
    bilinear, antialiased), centre crop."""
    resized = resize_shorter_side(image, size)
    shape = tf.shape(resized)
    top, left = (shape[0] - size) // 2, (shape[1] - size) // 2
    return tf.ensure_shape(resized[top:top + size, left:left + size], [size, size, image.shape[-1]])


def _augment(image: tf.Tensor, size: int, flip: bool, key: tf.Tensor) -> tf.Tensor:
    """Random size x size crop (and horizontal flip) of one image, from the stateless seed `key`."""
    keys = tf.random.experimental.stateless_split(key, 2)
    image = tf.image.stateless_random_crop(image, [size, size, 3], seed=keys[0])
    if flip:
        image = tf.image.stateless_random_flip_left_right(image, seed=keys[1])
    return image


def _element_key(seed: int, position: tf.Tensor) -> tf.Tensor:
    # Negative second words: never equal to a shuffle seed (seed, epoch >= 0).
    return tf.stack([tf.constant(seed, tf.int64), -1 - position])


# --- sources: where one split of one domain comes from ---


class _FileSource:
    """Image files of one folder that decoded at load time, in sorted order."""

    def __init__(self, folder: Path, files: list[Path]) -> None:
        self.folder, self.files = folder, files

    def describe(self) -> str:
        return f"image folder {self.folder}"

    def count(self) -> int:
        return len(self.files)

    def paths(self) -> tf.Tensor:
        return tf.constant([str(p) for p in self.files])

    def encoded(self, limit: int | None = None) -> tf.data.Dataset:
        return tf.data.Dataset.from_tensor_slices(self.paths()[:limit]).map(tf.io.read_file)


class _TfdsSource:
    """One TFDS split (optionally the examples whose attribute has one value), images still encoded."""

    def __init__(self, builder: Any, split: str, attribute: str | None = None, value: bool = True) -> None:
        self.builder, self.split, self.attribute, self.value = builder, split, attribute, value
        self.known_count: int | None = None

    def describe(self) -> str:
        what = f" ({'with' if self.value else 'without'} {self.attribute})" if self.attribute else ""
        return f"TFDS '{self.builder.name}' split '{self.split}'{what}"

    def examples_unfiltered(self, shuffle_seed: int | None = None) -> tf.data.Dataset:
        import tensorflow_datasets as tfds

        read_config = tfds.ReadConfig(shuffle_seed=shuffle_seed) if shuffle_seed is not None else None
        return self.builder.as_dataset(split=self.split, shuffle_files=shuffle_seed is not None,
                                       decoders={"image": tfds.decode.SkipDecoding()}, read_config=read_config)

    def examples(self, shuffle_seed: int | None = None) -> tf.data.Dataset:
        ds = self.examples_unfiltered(shuffle_seed)
        if self.attribute:
            attribute, value = self.attribute, self.value
            ds = ds.filter(lambda ex: tf.equal(ex["attributes"][attribute], value))
        return ds

    def encoded(self, limit: int | None = None, shuffle_seed: int | None = None) -> tf.data.Dataset:
        ds = self.examples(shuffle_seed).map(lambda ex: ex["image"])
        return ds if limit is None else ds.take(limit)

    def count(self) -> int:
        if self.known_count is None:
            splits = self.builder.info.splits
            known = splits[self.split].num_examples if self.split in splits else 0
            if known and not self.attribute:
                self.known_count = int(known)
            else:  # one pass over the records (images are not decoded)
                self.known_count = int(self.examples().reduce(np.int64(0), lambda n, _: n + 1).numpy())
        return self.known_count


@dataclass
class _Cache:
    """The memory left for decoded training images (uint8 size x size x 3 each); both domains share it."""

    size: int
    bytes_left: int

    def fits(self, n: int) -> bool:
        return 0 < n * self.size * self.size * 3 <= self.bytes_left

    def keep(self, images: np.ndarray) -> tf.Tensor:
        self.bytes_left -= images.nbytes
        return tf.constant(images)


def _readable(folder: Path, cache: _Cache | None = None) -> tuple[_FileSource, tf.Tensor | None]:
    """Decode every image under `folder` once (in parallel) and keep the files that decode; when they fit
    `cache`, the same pass keeps them squared to cache.size as one uint8 [N, L, L, 3] tensor."""
    files = list_images(folder)
    if not files:
        raise UserError(f"image folder {folder} has no image files ({', '.join(IMAGE_EXTENSIONS)}); put the "
                        "domain's images there")
    paths = tf.constant([str(p) for p in files])
    size = cache.size if cache is not None and cache.fits(len(files)) else None
    if size:
        table = np.empty((len(files), size, size, 3), np.uint8)  # pages are only touched when written

        def decode(i: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            return i, square(decode_rgb(tf.io.read_file(paths[i])), size)
    else:
        def decode(i: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            return i, tf.shape(decode_rgb(tf.io.read_file(paths[i])))

    scan = tf.data.Dataset.range(len(files)).map(decode, num_parallel_calls=tf.data.AUTOTUNE).ignore_errors()
    keep = []
    for index, image in scan.batch(256).as_numpy_iterator():
        if size:
            table[len(keep):len(keep) + len(index)] = image
        keep.extend(index.tolist())
    if not keep:
        raise UserError(f"image folder {folder} has no readable image ({len(files)} file(s) failed to decode); "
                        "replace the corrupt files")
    skipped = sorted(set(range(len(files))) - set(keep))
    if skipped:
        names = [files[i].relative_to(folder).as_posix() for i in skipped[:_WARN_NAMES]]
        more = " ..." if len(skipped) > _WARN_NAMES else ""
        print(f"warning: skipped {len(skipped)} unreadable image(s) in {folder}: {', '.join(names)}{more}",
              file=sys.stderr, flush=True)
    source = _FileSource(folder, [files[i] for i in keep])  # keep is in file order (deterministic map)
    return source, (cache.keep(table[:len(keep)]) if size and cache is not None else None)


# --- domains and pairs ---


@dataclass
class _Domain:
    train: _FileSource | _TfdsSource
    test: _FileSource | _TfdsSource
    table: tf.Tensor | None = None  # uint8 [N, L, L, 3]: the training images, decoded and squared once


def _materialize(source: _TfdsSource, size: int) -> np.ndarray:
    """Every image of `source`, decoded and squared once (in parallel), as one uint8 [N, size, size, 3] array."""
    out = np.empty((source.count(), size, size, 3), np.uint8)
    done = 0
    batches = source.encoded().map(lambda data: square(decode_rgb(data), size),
                                   num_parallel_calls=tf.data.AUTOTUNE).batch(256)
    for batch in batches.as_numpy_iterator():
        out[done:done + len(batch)] = batch[:len(out) - done]
        done += len(batch)
    return out[:done]


def _stream_seed(seed: int, start_step: int) -> int:
    """One int32 shuffle seed for a TFDS stream (too large for memory) from its domain's seed and the step it
    starts at: a resumed stream reshuffles instead of repeating the run's first images."""
    return (seed * DOMAIN_B_SEED_OFFSET + start_step) % (2**31 - 1)


@dataclass
class ImagePair:
    """Two image domains: training streams, test images and counts; build it with `load_image_pair`."""

    name_a: str
    name_b: str
    image_size: int
    load_size: int
    flip: bool = True
    _a: _Domain | None = field(default=None, repr=False)
    _b: _Domain | None = field(default=None, repr=False)

    def _domain(self, domain: str) -> _Domain:
        if domain not in ("a", "b"):
            raise ValueError(f"domain must be 'a' or 'b', got {domain!r}")
        return self._a if domain == "a" else self._b  # type: ignore[return-value]

    def num_train(self, domain: str) -> int:
        """How many training images domain "a" or "b" has."""
        return self._domain(domain).train.count()

    def test_images(self, domain: str, limit: int | None = None) -> np.ndarray:
        """The first `limit` (default all) test images of a domain, uint8 [N, S, S, 3], always in the same order."""
        return self._squared(self._domain(domain).test, limit)

    def train_images(self, domain: str, limit: int | None = None) -> np.ndarray:
        """The first `limit` (default all) training images of a domain, squared like the test images (no
        augmentation): what the domain judge of evaluation learns from."""
        return self._squared(self._domain(domain).train, limit)

    def train_and_test_images(self, domain: str, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """`train_images(domain)` and `test_images(domain, limit)` with each source decoded once: a domain that
        tests on its own training images (no test split) slices the test images from the training images."""
        train = self.train_images(domain)
        source = self._domain(domain)
        test = train[:limit] if source.test is source.train else self.test_images(domain, limit)
        return train, test

    def _squared(self, source: _FileSource | _TfdsSource, limit: int | None) -> np.ndarray:
        size = self.image_size
        batches = (
            source.encoded(limit)
            .map(lambda data: square(decode_rgb(data), size), num_parallel_calls=tf.data.AUTOTUNE)
            .batch(256)
        )
        return np.concatenate([np.zeros((0, size, size, 3), np.uint8), *batches.as_numpy_iterator()])

    def _stream(self, domain: _Domain, batch_size: int, seed: int, start_step: int) -> tf.data.Dataset:
        """Endless float32 [B, S, S, 3] batches of one domain's training images in [-1, 1]."""
        n = domain.train.count()
        if n < batch_size:
            raise UserError(f"{domain.train.describe()} has only {n} readable training image(s), fewer than "
                            f"the batch size {batch_size}; lower --batch-size")
        size, load, flip = self.image_size, self.load_size, self.flip

        def augment(position: tf.Tensor, image: tf.Tensor) -> tf.Tensor:
            return to_model_range(_augment(image, size, flip, _element_key(seed, position)))

        if isinstance(domain.train, _TfdsSource) and domain.table is None:
            # Too large for memory: TFDS's own file shuffling plus a shuffle buffer, seeded by (seed, start_step).
            stream_seed = _stream_seed(seed, start_step)
            images = (domain.train.encoded(shuffle_seed=stream_seed).repeat()
                      .shuffle(min(n, _SHUFFLE_BUFFER), seed=stream_seed))
            elements = tf.data.Dataset.zip(tf.data.Dataset.counter(start=start_step * batch_size), images)
            ds = elements.map(lambda pos, data: augment(pos, square(decode_rgb(data), load)),
                              num_parallel_calls=tf.data.AUTOTUNE)
        else:
            elements = shuffled_positions(n, seed, start_step * batch_size)
            if domain.table is not None:
                table = domain.table
                ds = elements.map(lambda pos, i: augment(pos, tf.gather(table, i)),
                                  num_parallel_calls=tf.data.AUTOTUNE)
            else:
                paths = domain.train.paths()
                ds = elements.map(lambda pos, i: augment(pos, square(decode_rgb(tf.io.read_file(paths[i])), load)),
                                  num_parallel_calls=tf.data.AUTOTUNE)
        return ds.batch(batch_size, drop_remainder=True)

    def batches(self, batch_size: int, seed: int, start_step: int = 0) -> tf.data.Dataset:
        """Endless unpaired batches {"x_a", "x_b"} (float32 [B, S, S, 3] in [-1, 1]), each domain shuffled with its
        own seed; `start_step` continues the stream of an interrupted run (see the module docstring)."""
        ds_a = self._stream(self._domain("a"), batch_size, seed, start_step)
        ds_b = self._stream(self._domain("b"), batch_size, seed + DOMAIN_B_SEED_OFFSET, start_step)
        return tf.data.Dataset.zip(ds_a, ds_b).map(lambda x_a, x_b: {"x_a": x_a, "x_b": x_b}).prefetch(
            tf.data.AUTOTUNE)


def _names(stem: str) -> tuple[str, str]:
    """Domain names from a data set name: 'horse2zebra' -> ('horse', 'zebra'), else ('A', 'B')."""
    first, _, second = stem.partition("2")
    return (first, second) if first and second else ("A", "B")


def _prepared(name: str) -> Any:
    """The TFDS builder for `name`, downloaded and prepared first if needed and possible."""
    builder = _tfds_builder(name)
    if not builder.is_prepared():
        host = IMAGE_TFDS_HOSTS[name.split("/")[0]]
        where = os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
        if not digits.network_reachable(host):
            local = ", or use --dataset folder:ROOT with the unzipped images" if name.startswith("cycle_gan/") else ""
            raise UserError(f"TFDS '{name}' is not prepared in {where} and cannot be downloaded (no network): run "
                            f"once with network access, or point TFDS_DATA_DIR to where it is prepared{local}")
        try:
            builder.download_and_prepare()
        except Exception as err:  # network, disk, quota or checksum failures from TFDS internals
            raise UserError(f"TFDS could not prepare '{name}' ({type(err).__name__}: "
                            f"{str(err).splitlines()[0][:200] if str(err) else ''}); retry, or prepare it "
                            "elsewhere and set TFDS_DATA_DIR") from None
    return builder


def _sources(dataset: str, domain_a: str | None, domain_b: str | None, attribute: str | None,
             cache: _Cache) -> tuple[str, str, _Domain, _Domain]:
    if dataset == "folders":
        a, b = Path(domain_a).expanduser(), Path(domain_b).expanduser()  # type: ignore[arg-type]
        name_a, name_b = a.resolve().name or "A", b.resolve().name or "B"
        if name_a == name_b:
            name_a, name_b = f"{name_a}_a", f"{name_b}_b"
        (train_a, table_a), (train_b, table_b) = _readable(a, cache), _readable(b, cache)
        return name_a, name_b, _Domain(train_a, train_a, table_a), _Domain(train_b, train_b, table_b)
    if dataset.startswith("folder:"):
        root = Path(dataset[len("folder:"):]).expanduser()
        domains = []
        for side in "AB":
            train, table = _readable(root / f"train{side}", cache)
            test = _readable(root / f"test{side}")[0] if (root / f"test{side}").is_dir() else train
            domains.append(_Domain(train, test, table))
        return *_names(root.resolve().name), domains[0], domains[1]
    if dataset.startswith("cycle_gan/"):
        builder = _prepared(dataset)
        a, b = (_Domain(_TfdsSource(builder, f"train{s}"), _TfdsSource(builder, f"test{s}")) for s in "AB")
        return *_names(dataset[len("cycle_gan/"):]), a, b
    builder = _prepared("celeb_a")
    a, b = (_Domain(_TfdsSource(builder, "train", attribute, value), _TfdsSource(builder, "test", attribute, value))
            for value in (True, False))
    # One pass over the training records counts both domains (images are not decoded).
    flags = a.train.examples_unfiltered().map(lambda ex: ex["attributes"][attribute]).batch(8192)
    values = np.concatenate([np.zeros(0, bool), *flags.as_numpy_iterator()])
    a.train.known_count, b.train.known_count = int(values.sum()), int((~values).sum())
    return attribute, f"no_{attribute}", a, b  # type: ignore[return-value]


def load_image_pair(dataset: str, image_size: int, domain_a: str | None = None, domain_b: str | None = None,
                    attribute: str | None = None, load_size: int = 0, flip: bool = True,
                    cache_mb: int = 2048) -> ImagePair:
    """Both domains of an image data set, checked; the training images are decoded into memory once when
    all of a domain's resized images fit what is left of `cache_mb` (both domains share it), else streamed."""
    check_image_dataset(dataset, domain_a, domain_b, attribute)
    check_tfds_names(dataset, attribute)
    load = default_load_size(image_size, load_size)
    if image_size < 1 or load < image_size:
        raise UserError(f"load_size ({load}) must be at least image_size ({image_size}); raise data.load_size or "
                        "use 0 for the default (image_size * 286 / 256)")
    cache = _Cache(load, cache_mb * 2**20)
    name_a, name_b, a, b = _sources(dataset, domain_a, domain_b, attribute, cache)  # folders: cached while scanned
    for domain in (a, b):
        if domain.table is None and isinstance(domain.train, _TfdsSource) and cache.fits(domain.train.count()):
            domain.table = cache.keep(_materialize(domain.train, load))
    return ImagePair(name_a, name_b, image_size, load, flip, a, b)
