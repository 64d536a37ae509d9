"""The one list of data sets: digit domains and pairs, the image data-set syntax, and their cheap checks.

No TensorFlow or numpy here: the config layer and the command lines read this catalogue without loading
the data layer. Checks that need a data set itself (CelebA attribute names, the list of `cycle_gan/<name>`
configs) run in `unit_tf.data.image_domains` when the data is opened.

Domain adaptation on your own files: "da" (data.domain_a a labelled source, data.domain_b an unlabelled target,
data.target_test optional labelled target images), spelled "da:SOURCE,TARGET" on the command line; the
folders' contents are read by unit_tf.data.class_folders.

Image data sets (the `dataset` string):
  "folders"           two folders (--domain-a, --domain-b), every image under each, recursively;
  "folder:ROOT"       the CycleGAN layout ROOT/trainA, trainB and optional testA, testB;
  "cycle_gan/<name>"  TFDS `cycle_gan/<name>`, splits trainA, trainB, testA, testB;
  "celeb_a"           TFDS `celeb_a` split by an attribute (--attribute): A with it, B without it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unit_tf.errors import UserError


@dataclass(frozen=True)
class DigitDomain:
    """One digit data set: its image channels and where its files come from."""

    name: str
    channels: int
    tfds_name: str | None  # None: not in TFDS
    download_host: str | None  # the host TFDS downloads from (checked before a download is attempted)
    raw_files: str  # what the official files are called, for error messages ("": none, npz only)
    obtain: str = ""  # where to get it when TFDS has none, for error messages


DIGIT_DOMAINS = {
    "mnist": DigitDomain("mnist", 1, "mnist", "storage.googleapis.com",
                         "train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-*"),
    "usps": DigitDomain("usps", 1, None, None, "usps.h5",
                        "e.g. usps.h5 from the widely distributed HDF5 copy, groups train/test with data and target"),
    "svhn": DigitDomain("svhn", 3, "svhn_cropped", "ufldl.stanford.edu", "train_32x32.mat, test_32x32.mat"),
    # MNIST digits blended with colour photo patches (Ganin & Lempitsky 2015), built from MNIST and any photos.
    "mnist_m": DigitDomain("mnist_m", 3, None, None, "",
                           "build them: python benchmarks/make_mnist_m.py --photos PHOTOS --output DIR/mnist_m"),
}

#: Classes of every digit domain: the digits 0..9.
DIGIT_CLASSES = 10


@dataclass(frozen=True)
class DigitPair:
    """A domain-adaptation pair (labelled source A, target B), the preset it trains with when --preset is not
    given, and settings of its own applied after the preset."""

    domain_a: str
    domain_b: str
    preset: str = "digits_da"
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def domains(self) -> tuple[str, str]:
        return self.domain_a, self.domain_b

    @property
    def channels(self) -> tuple[int, int]:
        """Image channels of (domain A, domain B)."""
        return DIGIT_DOMAINS[self.domain_a].channels, DIGIT_DOMAINS[self.domain_b].channels


#: Digit pairs, source (domain A) first. The official svhn2mnist.yaml inverts MNIST (domain B); MNIST -> MNIST-M
#: inverts MNIST too: an MNIST-M digit on a bright patch is dark on bright (docs/domain_adaptation.md).
DIGIT_PAIRS = {
    "svhn_mnist": DigitPair("svhn", "mnist", settings={"data.invert_b": True}),
    "mnist_usps": DigitPair("mnist", "usps"),
    "usps_mnist": DigitPair("usps", "mnist"),
    "mnist_mnistm": DigitPair("mnist", "mnist_m", settings={"data.invert_a": True}),
}

#: Domain adaptation on your own files: the config's data set name, and its command-line spelling.
DA_DATASET = "da"
DA_SYNTAX = "da:SOURCE,TARGET"


def is_da_dataset(dataset: str) -> bool:
    """Whether `dataset` is domain adaptation on your own files ("da" or "da:SOURCE,TARGET")."""
    return dataset == DA_DATASET or dataset.startswith(DA_DATASET + ":")


def split_da_dataset(dataset: str) -> tuple[str, str]:
    """"da:SOURCE,TARGET" -> (SOURCE, TARGET)."""
    parts = dataset[len(DA_DATASET) + 1:].split(",")
    if len(parts) != 2 or not all(part.strip() for part in parts):
        raise UserError(f"dataset '{dataset}' must be {DA_SYNTAX} (two folders, one comma), e.g. "
                        "da:data/mnist,data/mnist_m; for paths with commas use --source and --target")
    return parts[0].strip(), parts[1].strip()


def check_da_folders(source: str | None, target: str | None, target_test: str | None) -> None:
    """The folders of dataset "da" are given and exist (their contents are checked when they are scanned)."""
    if not source or not target:
        raise UserError(f"dataset 'da' needs a source and a target folder: --source DIR --target DIR, or "
                        f"--dataset {DA_SYNTAX}")
    for flag, folder in (("--source", source), ("--target", target), ("--target-test", target_test)):
        if folder is not None and not Path(folder).expanduser().is_dir():
            raise UserError(f"folder {folder} ({flag}) does not exist; pass an existing folder")


#: The image data sets as a user spells them (error messages, help texts).
IMAGE_DATASETS = "folders (with --domain-a/--domain-b), folder:ROOT, cycle_gan/<name>, celeb_a (with --attribute)"

#: Hosts TFDS downloads the image data sets from (checked before a download is attempted).
IMAGE_TFDS_HOSTS = {"cycle_gan": "efrosgans.eecs.berkeley.edu", "celeb_a": "drive.google.com"}


def is_image_dataset(dataset: str) -> bool:
    """Whether `dataset` names translation images (folders or TFDS) rather than a digit pair."""
    return dataset in ("folders", "celeb_a") or dataset.startswith(("folder:", "cycle_gan/"))


def check_image_dataset(dataset: str, domain_a: str | None, domain_b: str | None, attribute: str | None) -> None:
    """The arguments an image data set needs, checked without reading it: the right flags are given and the
    folders exist (CelebA attribute and CycleGAN names are checked when the data is opened)."""
    if not is_image_dataset(dataset):
        raise UserError(f"'{dataset}' is not an image data set; use folders, folder:ROOT, cycle_gan/<name> or "
                        "celeb_a")
    if dataset == "folders":
        if not domain_a or not domain_b:
            raise UserError("dataset 'folders' needs both --domain-a DIR and --domain-b DIR (one image folder per "
                            "domain)")
        for flag, folder in (("--domain-a", domain_a), ("--domain-b", domain_b)):
            if not Path(folder).expanduser().is_dir():
                raise UserError(f"image folder {folder} ({flag}) does not exist; pass an existing folder")
    elif domain_a or domain_b:
        raise UserError(f"--domain-a/--domain-b only apply to dataset 'folders', not '{dataset}'; drop them")
    if dataset == "celeb_a":
        if not attribute:
            raise UserError("dataset 'celeb_a' needs --attribute NAME (e.g. Blond_Hair): images with it form "
                            "domain A, images without it domain B")
    elif attribute:
        raise UserError(f"--attribute only applies to dataset 'celeb_a', not '{dataset}'; drop it")
    if dataset.startswith("folder:"):
        if not dataset[len("folder:"):]:
            raise UserError("dataset 'folder:ROOT' needs a folder after 'folder:', e.g. folder:data/horse2zebra")
        root = Path(dataset[len("folder:"):]).expanduser()
        for sub in ("trainA", "trainB"):
            if not (root / sub).is_dir():
                raise UserError(f"dataset '{dataset}' needs the folder {root / sub} (CycleGAN layout: trainA, "
                                "trainB, optional testA, testB); create it or fix ROOT")

