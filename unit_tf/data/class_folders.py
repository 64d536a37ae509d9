"""Domain adaptation on your own files (dataset "da"): a labelled source, an unlabelled target and an optional
labelled target test split, found, checked and decoded.

- Source: one subfolder per class (the folder name is the class name; its images at any depth), or an npz
  folder: `train.npz` (`x`, `y` class indices) and optional `test.npz` (what the source accuracy is measured on;
  without it, the source training images).
- Target: every image under the folder, any layout (no label is read), or an npz folder: `train.npz` (`x`; a
  `y` is ignored) and optional `test.npz` (labelled: the target test split when --target-test is not given).
- Target test (--target-test): class subfolders named like the source's, or an npz folder with `test.npz`.

Classes are the source's subfolders sorted by name (an npz source: 0..K-1); npz labels are indices into that
order. A folder (or npz folder) with `train.npz` is read as npz. Images: files are decoded upright as gray or
RGB (unit_tf.data.image_files), their shorter side resized to the model's size and centre-cropped
(image_domains.square); npz arrays are resized whole, as the digit pipeline does. Channels, unless chosen: a
folder is gray (1) when every image in it is stored gray, else RGB (3); an npz folder has its arrays' channels.
No TensorFlow at import: the config layer describes the data (class names, channels) without loading it.
"""

from __future__ import annotations

import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from unit_tf.data import formats
from unit_tf.data.image_files import IMAGE_EXTENSIONS, decode_image, is_image_file, list_images
from unit_tf.errors import UserError

if TYPE_CHECKING:
    from unit_tf.data.pipeline import DomainData

#: PIL modes of images stored without colour.
GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
_WARN_NAMES = 5  # unreadable files named in the warning line


@dataclass(frozen=True)
class Split:
    """One split of one domain as found on disk: image files (with their class indices when labelled), or an
    npz file."""

    where: str  # how messages name it, e.g. "source folder data/digits"
    files: tuple[Path, ...] = ()
    labels: tuple[int, ...] | None = None
    npz: Path | None = None
    labelled: bool = False

    def count(self) -> int:
        return _npz_header(self.npz, "x")[0] if self.npz else len(self.files)

    def channels(self) -> int:
        """The images' own channels: an npz array's; 1 for files all stored gray, else 3."""
        if self.npz:
            return _npz_header(self.npz, "x")[-1]
        for path in self.files:  # header reads only; the first colour image decides
            try:
                with Image.open(path) as image:
                    if image.mode not in GRAY_MODES:
                        return 3
            except Exception:  # noqa: S112 - unreadable files are skipped (with a warning) when decoded
                continue
        return 1


@dataclass(frozen=True)
class DaFiles:
    """Everything dataset "da" reads: class names, source and target training splits, the test splits (None:
    the source is measured on its training images, the target has no labelled images)."""

    class_names: tuple[str, ...]
    source: Split
    source_test: Split | None
    target: Split
    target_test: Split | None


def _npz_header(path: Path, key: str) -> tuple[int, ...]:
    """The shape of array `key` in an npz file, from its header (nothing is decompressed beyond it)."""
    try:
        with zipfile.ZipFile(path) as archive, archive.open(f"{key}.npy") as member:
            version = np.lib.format.read_magic(member)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape = read(member)[0]
    except KeyError:
        raise UserError(f"{path} must hold an array '{key}' (np.savez(path, x=images, y=labels))") from None
    except Exception:  # untrusted bytes: any parser failure means the file is damaged
        raise UserError(f"{path} is not a valid npz file (truncated or corrupt); replace it") from None
    if len(shape) not in (3, 4) or (len(shape) == 4 and shape[-1] not in (1, 3)):
        raise UserError(f"{path}: expected images N x H x W x C (C = 1 or 3), got {shape}")
    return shape if len(shape) == 4 else (*shape, 1)


def _npz_labels(path: Path) -> np.ndarray:
    """The labels `y` of an npz file (the images are not read), checked: integer class indices >= 0."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if "y" not in data:
                raise UserError(f"{path} must hold the labels 'y' (class indices) beside the images 'x'")
            y = data["y"]
    except UserError:
        raise
    except Exception:  # untrusted bytes: any parser failure means the file is damaged
        raise UserError(f"{path} is not a valid npz file (truncated or corrupt); replace it") from None
    if y.ndim != 1 or y.dtype.kind not in "iu" or len(y) == 0 or y.min() < 0:
        raise UserError(f"{path}: 'y' must be one integer class index >= 0 per image, got {y.dtype} {y.shape}")
    return y.astype(np.int64)


def _is_npz_folder(folder: Path) -> bool:
    return (folder / "train.npz").is_file()


def _class_folders(folder: Path, what: str) -> list[Path]:
    """The class subfolders of a labelled folder, sorted by name; an error for none or for loose images."""
    subfolders = sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
                        key=lambda p: p.name)
    loose = sorted(p.name for p in folder.iterdir() if p.is_file() and is_image_file(p))
    if not subfolders:
        raise UserError(f"{what} {folder} has no class subfolders: put each class's images in {folder}/<class "
                        "name>/ (or give an npz folder with train.npz)")
    if loose:
        raise UserError(f"{what} {folder} has image files outside its class subfolders (e.g. {loose[0]}); move "
                        "each into the folder of its class")
    return subfolders


def _labelled_files(folder: Path, what: str, names: list[str]) -> Split:
    """The images of every class subfolder, labelled by the index of their class in `names`."""
    files: list[Path] = []
    labels: list[int] = []
    for sub in _class_folders(folder, what):
        found = list_images(sub)
        if not found:
            raise UserError(f"class '{sub.name}' ({sub}) of the {what} has no image files "
                            f"({', '.join(IMAGE_EXTENSIONS)}); add its images or remove the folder")
        files += found
        labels += [names.index(sub.name)] * len(found)
    return Split(f"{what} {folder}", tuple(files), tuple(labels), labelled=True)


def _source(folder: Path) -> tuple[tuple[str, ...], Split, Split | None]:
    """Class names, training split and (npz only) test split of the source."""
    if _is_npz_folder(folder):
        labels = _npz_labels(folder / "train.npz")
        counts = np.bincount(labels)
        if (counts == 0).any():
            raise UserError(f"source {folder / 'train.npz'} has no image of class {int(np.argmin(counts))} (labels "
                            f"0..{len(counts) - 1}): every class index needs images; renumber the labels")
        names = tuple(str(k) for k in range(len(counts)))
        test = folder / "test.npz"
        return (names, Split(f"source {folder / 'train.npz'}", npz=folder / "train.npz", labelled=True),
                Split(f"source {test}", npz=test, labelled=True) if test.is_file() else None)
    names = [p.name for p in _class_folders(folder, "source folder")]
    return tuple(names), _labelled_files(folder, "source folder", names), None


def _target(folder: Path) -> tuple[Split, Split | None]:
    """Training split (unlabelled) and, for an npz folder with test.npz, the labelled test split."""
    if _is_npz_folder(folder):
        test = folder / "test.npz"
        return (Split(f"target {folder / 'train.npz'}", npz=folder / "train.npz"),
                Split(f"target test {test}", npz=test, labelled=True) if test.is_file() else None)
    files = list_images(folder)
    if not files:
        raise UserError(f"target folder {folder} has no image files ({', '.join(IMAGE_EXTENSIONS)}); put the target "
                        "domain's images there")
    return Split(f"target folder {folder}", tuple(files)), None


def _target_test(folder: Path, names: tuple[str, ...]) -> Split:
    """Labelled target test images: class subfolders (each a source class) or an npz folder with test.npz."""
    if (folder / "test.npz").is_file():
        return Split(f"target test {folder / 'test.npz'}", npz=folder / "test.npz", labelled=True)
    unknown = [p.name for p in _class_folders(folder, "target-test folder") if p.name not in names]
    if unknown:
        raise UserError(f"target-test classes {', '.join(unknown)} ({folder}) are not among the source classes "
                        f"({', '.join(names)}); rename or remove those folders")
    return _labelled_files(folder, "target-test folder", list(names))


def _check_npz_labels(split: Split | None, names: tuple[str, ...]) -> None:
    if split is not None and split.npz is not None:
        labels = _npz_labels(split.npz)
        if labels.max() >= len(names):
            raise UserError(f"{split.where} has labels up to {labels.max()}, but the source has {len(names)} classes "
                            f"({', '.join(names[:10])}{' ...' if len(names) > 10 else ''}); npz labels are indices "
                            "into the source's classes")


def find(source: str, target: str, target_test: str | None = None) -> DaFiles:
    """Scan and check the folders of dataset "da" (one error line for each way they can be wrong)."""
    from unit_tf.catalogue import check_da_folders

    check_da_folders(source, target, target_test)
    names, train_a, test_a = _source(Path(source).expanduser())
    if len(names) < 2:
        raise UserError(f"source {source} has only one class ({names[0]}); a classifier needs two or more")
    train_b, test_b = _target(Path(target).expanduser())
    if target_test is not None:
        test_b = _target_test(Path(target_test).expanduser(), names)
    for split in (test_a, test_b):
        _check_npz_labels(split, names)
    return DaFiles(names, train_a, test_a, train_b, test_b)


@dataclass(frozen=True)
class DaDescription:
    """What the config records of dataset "da": class names and each domain's own channels."""

    class_names: list[str]
    channels_a: int
    channels_b: int


def describe(source: str, target: str, target_test: str | None, batch_size: int) -> DaDescription:
    """Class names and channels of dataset "da", after checking that each training split has a batch."""
    files = find(source, target, target_test)
    for split in (files.source, files.target):
        if 0 < batch_size and split.count() < batch_size:
            raise UserError(f"{split.where} has {split.count()} images, fewer than the batch size {batch_size}; "
                            "lower --batch-size or add images")
    return DaDescription(list(files.class_names), files.source.channels(), files.target.channels())


# --- decoding (TensorFlow from here on, imported when used) ---


def _convert_channels(x: np.ndarray, channels: int) -> np.ndarray:
    """uint8 N x H x W x C -> `channels`: gray repeated to RGB, RGB to gray by PIL's luminance (as files are)."""
    if x.shape[-1] == channels:
        return x
    if channels == 3:
        return np.repeat(x, 3, axis=-1)
    gray = x.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.clip(np.round(gray), 0, 255).astype(np.uint8)[..., None]


def _decode_files(files: tuple[Path, ...], channels: int, size: int, where: str) -> tuple[np.ndarray, list[int]]:
    """Decode (in parallel) and square every file: uint8 [n, size, size, channels] and the indices of the files
    that decoded (the others are skipped, with one warning line)."""
    import tensorflow as tf

    from unit_tf.data.image_domains import square

    paths = tf.constant([str(p) for p in files])

    def read(data: bytes | np.ndarray) -> np.ndarray:  # bytes in tf.data, a 0-d object array eagerly
        return decode_image(data if isinstance(data, bytes) else data.item(), channels)

    def decode(i: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        image = tf.numpy_function(read, [tf.io.read_file(paths[i])], tf.uint8, stateful=False)
        return i, square(tf.ensure_shape(image, [None, None, channels]), size)

    scan = tf.data.Dataset.range(len(files)).map(decode, num_parallel_calls=tf.data.AUTOTUNE).ignore_errors()
    images, keep = np.empty((len(files), size, size, channels), np.uint8), []
    for index, batch in scan.batch(256).as_numpy_iterator():
        images[len(keep):len(keep) + len(index)] = batch
        keep.extend(index.tolist())
    skipped = sorted(set(range(len(files))) - set(keep))
    if skipped:
        names = [files[i].name for i in skipped[:_WARN_NAMES]]
        print(f"warning: skipped {len(skipped)} unreadable image(s) of the {where}: {', '.join(names)}"
              f"{' ...' if len(skipped) > _WARN_NAMES else ''}", file=sys.stderr, flush=True)
    return images[:len(keep)], keep


def load_split(split: Split, name: str, channels: int, size: int, class_names: tuple[str, ...]) -> DomainData:
    """A split decoded into memory: uint8 [N, size, size, channels], its labels (None when unlabelled)."""
    from unit_tf.data.digits import resize_images
    from unit_tf.data.pipeline import DomainData

    if split.npz is not None:
        x, y = formats.read_npz(split.npz, classes=len(class_names) if split.labelled else None,
                                labelled=split.labelled)
        return DomainData(name, resize_images(_convert_channels(x, channels), size), y if split.labelled else None)
    images, keep = _decode_files(split.files, channels, size, split.where)
    if not keep:
        raise UserError(f"{split.where} has no readable image ({len(split.files)} file(s) failed to decode); "
                        "replace the corrupt files")
    if split.labels is None:
        return DomainData(name, images, None)
    labels = np.asarray(split.labels, np.int64)[keep]
    empty = sorted(set(split.labels) - set(labels.tolist()))
    if empty:
        raise UserError(f"class '{class_names[empty[0]]}' of the {split.where} has no readable image; replace its "
                        "corrupt files")
    return DomainData(name, images, labels)


def domain_names(source: str, target: str) -> tuple[str, str]:
    """The domains' names in reports: the folders' names (made distinct)."""
    a, b = Path(source).expanduser().resolve().name or "source", Path(target).expanduser().resolve().name or "target"
    return (f"{a}_source", f"{b}_target") if a == b else (a, b)
