"""Build MNIST-M (Ganin & Lempitsky 2015) from MNIST and colour photos, in the digit pipeline's npz layout.

    python benchmarks/make_mnist_m.py --photos ../shared/data/cat2dog --output ../shared/data/mnist_m \
        --data-dir ../shared/data

Image i of a split is MNIST image i of that split, with its label, blended with a 28 x 28 patch cut at a random
place from a random photo: out = |digit - patch| per colour channel (the digit's gray value repeated three
times; Ganin's formula, no binarization). Patches of the training split come from the photos under
PHOTOS/train*/, those of the test split from PHOTOS/test*/ (a CycleGAN layout such as cat2dog: trainA,
trainB / testA, testB); a photo whose content appears in both is refused. Deterministic: the same MNIST,
photos and --seed give the same arrays.

Writes OUTPUT/train.npz and OUTPUT/test.npz (`x` uint8 N x 28 x 28 x 3, `y` int64) and OUTPUT/samples.png
(rows of MNIST digits above their MNIST-M images); prints one JSON line. With OUTPUT = DATA_DIR/mnist_m, the
pair `mnist_mnistm` trains on it (`train.py --dataset mnist_mnistm --data-dir DATA_DIR`).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unit_tf.cli import ArgumentParser, quiet_tensorflow  # noqa: E402
from unit_tf.errors import UserError, run_cli  # noqa: E402

SPLITS = ("train", "test")
PATCH = 28  # MNIST's size: digits are blended at their own size (the pipeline resizes to the model's)
SAMPLE_COLUMNS = 16
SAMPLE_ROW_PAIRS = 4


def blend(digits: np.ndarray, patches: np.ndarray) -> np.ndarray:
    """|digit - patch| per channel: uint8 gray digits N x H x W x 1 and colour patches N x H x W x 3 -> uint8
    N x H x W x 3."""
    return np.abs(digits.astype(np.int16) - patches.astype(np.int16)).astype(np.uint8)


def photo_files(root: Path, split: str) -> list[Path]:
    """Every image under ROOT/<split>*/ (e.g. trainA, trainB), sorted by path."""
    from unit_tf.data.image_files import list_images

    folders = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(split))
    files = [f for folder in folders for f in list_images(folder)]
    if not files:
        raise UserError(f"no photos for the {split} split: {root} needs folders {split}*/ (e.g. {split}A) with "
                        "colour images")
    return files


def load_photos(files: list[Path]) -> list[np.ndarray]:
    """The photos as uint8 RGB arrays, upright; unreadable ones and ones smaller than a patch are skipped
    (one warning line)."""
    from unit_tf.data.image_files import UnreadableImage, decode_image

    photos, skipped = [], []
    for path in files:
        try:
            image = decode_image(path, 3)
        except UnreadableImage:
            skipped.append(path.name)
            continue
        if min(image.shape[:2]) < PATCH:
            skipped.append(path.name)
            continue
        photos.append(image)
    if skipped:
        print(f"warning: skipped {len(skipped)} photo(s) unreadable or under {PATCH} px: {', '.join(skipped[:5])}"
              f"{' ...' if len(skipped) > 5 else ''}", file=sys.stderr, flush=True)
    if not photos:
        raise UserError(f"none of the {len(files)} photo(s) under {files[0].parent.parent} could be used (unreadable "
                        f"or under {PATCH} px); give colour photos")
    return photos


def random_patches(photos: list[np.ndarray], n: int, rng: np.random.Generator) -> np.ndarray:
    """n PATCH x PATCH crops, each from a random photo at a random place (uniform over the valid corners)."""
    which = rng.integers(0, len(photos), n)
    heights = np.array([p.shape[0] for p in photos])[which]
    widths = np.array([p.shape[1] for p in photos])[which]
    tops = (rng.random(n) * (heights - PATCH + 1)).astype(np.int64)
    lefts = (rng.random(n) * (widths - PATCH + 1)).astype(np.int64)
    out = np.empty((n, PATCH, PATCH, 3), np.uint8)
    for i, (k, top, left) in enumerate(zip(which, tops, lefts, strict=True)):
        out[i] = photos[k][top:top + PATCH, left:left + PATCH]
    return out


def make_split(digits: np.ndarray, photos: list[np.ndarray], seed: int, split: str) -> np.ndarray:
    """MNIST-M images of one split: each digit blended with its own random patch; the split's own stream of
    random numbers (seed, split index), so train and test do not depend on each other."""
    if digits.shape[1:] != (PATCH, PATCH, 1):
        raise UserError(f"MNIST images must be {PATCH} x {PATCH} x 1, got {digits.shape[1:]}")
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    return blend(digits, random_patches(photos, len(digits), rng))


def _digests(files: list[Path]) -> dict[str, Path]:
    return {hashlib.sha256(f.read_bytes()).hexdigest(): f for f in files}


def check_disjoint(train: list[Path], test: list[Path]) -> None:
    """No photo (by content) feeds both splits."""
    test_digests = _digests(test)
    shared = _digests(train).keys() & test_digests.keys()
    if shared:
        example = test_digests[sorted(shared)[0]]
        raise UserError(f"{len(shared)} photo(s) are both training and test photos (e.g. {example}); remove them "
                        "from one split")


def write_samples(mnist: np.ndarray, mnist_m: np.ndarray, path: Path) -> Path:
    """A grid: SAMPLE_ROW_PAIRS pairs of rows, MNIST digits above their MNIST-M images."""
    from unit_tf.images import make_grid, write_png

    n = SAMPLE_COLUMNS
    rows = []
    for r in range(SAMPLE_ROW_PAIRS):
        rows += [mnist[r * n:(r + 1) * n] / 127.5 - 1.0, mnist_m[r * n:(r + 1) * n] / 127.5 - 1.0]
    return write_png(make_grid(rows), path)


def build(photos_root: Path, output: Path, data_dir: str | None, seed: int) -> dict[str, Any]:
    """Write OUTPUT/{train,test}.npz and OUTPUT/samples.png; returns what was written."""
    from unit_tf.data.digits import load_domain

    if not photos_root.is_dir():
        raise UserError(f"photo folder {photos_root} does not exist; pass --photos ROOT with train*/ and test*/ "
                        "folders of colour images")
    files = {split: photo_files(photos_root, split) for split in SPLITS}
    check_disjoint(files["train"], files["test"])
    output.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"photos": str(photos_root), "output": str(output), "seed": seed}
    for split in SPLITS:
        digits, labels = load_domain("mnist", split, data_dir)
        photos = load_photos(files[split])
        images = make_split(digits, photos, seed, split)
        path = output / f"{split}.npz"
        np.savez_compressed(path, x=images, y=labels)
        result[split] = {"images": len(images), "photos": len(photos), "bytes": path.stat().st_size,
                         "x_sha256": hashlib.sha256(images.tobytes()).hexdigest()}
        if split == "test":
            result["samples"] = str(write_samples(digits, images, output / "samples.png"))
    return result


def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="benchmarks/make_mnist_m.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--photos", required=True, help="folder with train*/ and test*/ folders of colour photos "
                   "(e.g. ../shared/data/cat2dog)")
    p.add_argument("--output", required=True, help="folder for train.npz, test.npz, samples.png (use "
                   "DATA_DIR/mnist_m for the mnist_mnistm pair)")
    p.add_argument("--data-dir", help="where MNIST is (<dir>/mnist/{train,test}.npz or the IDX files; default "
                   "$UNIT_DATA_DIR, then TFDS)")
    p.add_argument("--seed", type=int, default=0, help="seed of the photo and patch choices (default 0)")
    args = p.parse_args(argv)
    quiet_tensorflow()
    print(json.dumps(build(Path(args.photos).expanduser(), Path(args.output).expanduser(), args.data_dir,
                           args.seed)), flush=True)
    return 0


if __name__ == "__main__":
    run_cli(main, "benchmarks/make_mnist_m.py")
