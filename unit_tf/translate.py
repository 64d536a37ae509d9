"""Translate image files with a trained run: `python -m unit_tf.translate --run-dir R --direction a2b ...`.

    python -m unit_tf.translate --run-dir R --direction a2b|b2a --input DIR_OR_FILE --output DIR
        [--size input|model] [--scale N] [--batch-size N] [--overwrite] [--step N]
    python -m unit_tf.translate --saved-model saved_models/NAME/1 --direction a2b --input ... --output DIR

--saved-model uses an export's `<direction>_encoded` signature (unit_tf.serving) instead of a run directory:
the same decoding and scaling, written at each input's own size.

Every jpg/jpeg/png/bmp/webp/gif under --input (searched recursively; other files are ignored) is decoded as
training decodes (unit_tf.data.image_files: EXIF orientation applied, alpha dropped, a GIF's first frame) to the
source domain's channels (gray or RGB) and resized (bilinear, antialiased) for the model:
- residual (translation) networks, which are fully convolutional: at its own aspect ratio, the shorter side
  resized to the training scale (the run's data.load_size, what training resized shorter sides to before its
  crop) or to --scale N, reflect-padded to a multiple of 2^model.n_downsample and cropped back after;
- digit networks: squashed to the model's S x S.
The translation is written to DIR/<its path relative to --input>, in the format of its extension, at the
input's own width x height (--size input) or at the size it was translated at (--size model: the scaled size,
or S x S). Gray results are written as one-channel images (WebP has no gray mode: RGB there). Writes are
atomic, existing files are never replaced without --overwrite, and --output may not overlap a scanned --input
folder. --step N translates with the checkpoint of step N instead of the latest. TensorFlow is imported only
once the files are checked, so bad flags and paths fail fast.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, TextIO

import numpy as np
from PIL import Image

from unit_tf.catalogue import is_image_dataset
from unit_tf.data.image_files import (
    IMAGE_EXTENSIONS,
    UnreadableImage,
    default_load_size,
    is_image_file,
    list_images,
    load_image,
    resize,
    resize_shorter_side,
    to_channels,
)
from unit_tf.errors import UserError
from unit_tf.files import write_bytes

if TYPE_CHECKING:
    import tensorflow as tf

    from unit_tf.config import UNITConfig
    from unit_tf.model import UNIT

PROG = "python -m unit_tf.translate"
#: File extension (lower case) -> PIL format and save options.
FORMATS: dict[str, tuple[str, dict]] = {
    ".png": ("PNG", {}),
    ".jpg": ("JPEG", {"quality": 95}),
    ".jpeg": ("JPEG", {"quality": 95}),
    ".bmp": ("BMP", {}),
    ".webp": ("WEBP", {"quality": 95}),
    ".gif": ("GIF", {}),
}
DIRECTIONS = {"a2b": ("a", "b"), "b2a": ("b", "a")}
SIZES = ("input", "model")
#: Unreadable files named in the warning line; the rest are counted.
NAMED_SKIPS = 5


class Job(NamedTuple):
    """One image to translate: where it is read and where its translation is written."""

    source: Path
    target: Path


@dataclass
class TranslationResult:
    """What a translation wrote, and the input files it skipped as unreadable."""

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)


def plan_translation(input_path: str | Path, output_dir: str | Path, overwrite: bool = False) -> list[Job]:
    """The (input file, output file) pairs for `input_path` (a file or a folder); refuses, before anything is
    translated, a missing input, no images, an output overlapping a scanned input, and existing outputs
    unless `overwrite`."""
    inp, out = Path(input_path), Path(output_dir)
    if not inp.exists():
        raise UserError(f"--input {inp} does not exist; pass an image file or a folder of images")
    if out.exists() and not out.is_dir():
        raise UserError(f"--output {out} is a file; pass a folder (it is created if missing)")
    inp_real, out_real = inp.resolve(), out.resolve()
    if inp.is_dir():
        if out_real == inp_real or out_real.is_relative_to(inp_real) or inp_real.is_relative_to(out_real):
            raise UserError(f"--output {out} overlaps --input {inp}; choose an output folder outside the input "
                            "(and not containing it), so no input is overwritten or translated twice")
        sources = list_images(inp)
        if not sources:
            extensions = "/".join(ext.lstrip(".") for ext in IMAGE_EXTENSIONS)
            raise UserError(f"--input {inp} holds no images ({extensions}); pass a folder that contains some")
        jobs = [Job(path, out / path.relative_to(inp)) for path in sources]
    else:
        if not is_image_file(inp):
            raise UserError(f"--input {inp} is not an image file ({', '.join(IMAGE_EXTENSIONS)}); pass an image or "
                            "a folder")
        if out_real in (inp_real.parent, inp.absolute().parent.resolve()):
            raise UserError(f"--output {out} is the folder of --input {inp}, so the translation would replace it; "
                            "choose another output folder")
        jobs = [Job(inp, out / inp.name)]
    for job in jobs:
        if job.target.is_dir():
            raise UserError(f"{job.target} is a folder; remove it or choose another --output")
        if job.target.exists() and not overwrite:
            raise UserError(f"{job.target} already exists; pass --overwrite to replace it, or choose another "
                            "--output")
    return jobs


def preprocess(image: Image.Image, size: int, channels: int) -> np.ndarray:
    """float32 size x size x channels in [-1, 1], squashed to the square (the digit networks' fixed input)."""
    x = to_channels(image, channels)
    if x.shape[:2] != (size, size):
        x = resize(x, size, size).numpy()
    return x.astype(np.float32) / 127.5 - 1.0


def preprocess_scaled(image: Image.Image, scale: int, channels: int) -> np.ndarray:
    """float32 h x w x channels in [-1, 1], the shorter side resized to `scale`, the aspect ratio kept (as
    training resizes before its crop)."""
    x = resize_shorter_side(to_channels(image, channels), scale).numpy()
    return x.astype(np.float32) / 127.5 - 1.0


def training_scale(config: UNITConfig) -> int:
    """The shorter side the run's training images were resized to: data.load_size (0: its default) for image
    data sets, model.image_size for the digit data sets."""
    if is_image_dataset(config.data.dataset):
        return default_load_size(config.model.image_size, config.data.load_size)
    return config.model.image_size


def postprocess(y: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """A translated float image in [-1, 1] -> uint8, resized to `size` = (width, height) if given."""
    x = (np.asarray(y, np.float32) + 1.0) * 127.5
    if size is not None and (x.shape[1], x.shape[0]) != tuple(size):
        width, height = size
        return resize(x, height, width).numpy()
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def encode_image(pixels: np.ndarray, suffix: str) -> bytes:
    """uint8 H x W x C (C = 1 or 3) in the format of the file extension `suffix`."""
    fmt, options = FORMATS[suffix.lower()]
    image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def write_image(pixels: np.ndarray, path: Path) -> Path:
    """Encode and write atomically: the file appears complete or not at all."""
    data = encode_image(pixels, path.suffix)
    try:
        return write_bytes(path, data)
    except OSError as err:
        raise UserError(f"could not write {path} ({err.strerror or err}); free disk space or choose a writable "
                        "--output") from None


def make_translator(model: UNIT, source: str, target: str) -> Callable[[tf.Tensor], tf.Tensor]:
    """One tf.function, traced once for any batch size, [N, H, W, C_source] -> [N, H, W, C_target] in [-1, 1]:
    any H, W (at least 2^n_downsample) for residual networks, S x S for the digit networks."""
    import tensorflow as tf

    cfg = model.unit_config.model
    channels = {"a": cfg.channels_a, "b": cfg.channels_b}
    size = None if model.size_multiple else cfg.image_size
    spec = tf.TensorSpec([None, size, size, channels[source]], tf.float32)

    @tf.function(input_signature=[spec])
    def translate(x: tf.Tensor) -> tf.Tensor:
        if model.size_multiple:
            y = model.translate_any_size(x, source, target)
        else:
            y = model.translate(x, source, target, training=False)
        return tf.clip_by_value(tf.cast(y, tf.float32), -1.0, 1.0)

    return translate


class Progress:
    """Images done, on stderr: a `\\r` counter on a terminal, else a line per ~10 %; silent for one batch."""

    def __init__(self, total: int, enabled: bool, stream: TextIO | None = None) -> None:
        self.total, self.enabled = total, enabled
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.decile = 0

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        if self.tty:
            end = "\n" if done >= self.total else ""
            self.stream.write(f"\rtranslating: {done}/{self.total}{end}")
        elif done * 10 // self.total > self.decile:
            self.decile = done * 10 // self.total
            self.stream.write(f"translating: {done}/{self.total} ({100 * done // self.total}%)\n")
        self.stream.flush()


def _chunks(jobs: Sequence[Job], size: int) -> Iterator[Sequence[Job]]:
    for start in range(0, len(jobs), size):
        yield jobs[start:start + size]


def _run_jobs(jobs: Sequence[Job], batch_size: int, progress: bool, prepare: Callable[[Image.Image], object],
              translate_batch: Callable[[list], list[np.ndarray]]) -> TranslationResult:
    """Read each job's image and `prepare` it (unreadable ones skipped), translate a batch at a time with
    `translate_batch` (prepared images -> uint8 H x W x C), write the results; a UserError if none could be read."""
    if batch_size <= 0:
        raise UserError(f"batch size must be positive, got {batch_size}")
    result = TranslationResult()
    bar = Progress(len(jobs), progress and len(jobs) > batch_size)
    done = 0
    for chunk in _chunks(jobs, batch_size):
        prepared, kept = [], []
        for job in chunk:
            try:
                prepared.append(prepare(load_image(job.source)))
            except UnreadableImage:
                result.skipped.append(job.source)
                continue
            kept.append(job)
        if prepared:
            for job, pixels in zip(kept, translate_batch(prepared), strict=True):
                result.written.append(write_image(pixels, job.target))
        done += len(chunk)
        bar.update(done)
    if not result.written:
        raise UserError(f"none of the {len(jobs)} input image(s) could be read ({skip_names(result.skipped)}); "
                        "pass valid image files")
    return result


def translate_files(model: UNIT, jobs: Sequence[Job], direction: str = "a2b", size: str = "input",
                    batch_size: int = 16, progress: bool = False, scale: int | None = None) -> TranslationResult:
    """Translate each job's image and write it; unreadable inputs are skipped (listed in the result), and a
    UserError is raised if none could be read. `scale` (residual networks only): the shorter side images are
    translated at (default: the training scale). Images of equal translated shape share model calls."""
    if direction not in DIRECTIONS:
        raise UserError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    if size not in SIZES:
        raise UserError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
    cfg = model.unit_config.model
    multiple = model.size_multiple
    if multiple is None and scale is not None:
        raise UserError(f"--scale applies to residual networks; this run's {cfg.architecture} networks translate "
                        f"at their fixed {cfg.image_size} x {cfg.image_size}: omit --scale")
    if multiple is not None:
        scale = scale or training_scale(model.unit_config)
        if scale < multiple:
            raise UserError(f"--scale must be at least {multiple} (2^model.n_downsample), got {scale}")
    source, target = DIRECTIONS[direction]
    source_channels = cfg.channels_a if source == "a" else cfg.channels_b
    translate = make_translator(model, source, target)

    def prepare(image: Image.Image) -> tuple[np.ndarray, tuple[int, int]]:
        x = (preprocess(image, cfg.image_size, source_channels) if multiple is None
             else preprocess_scaled(image, scale, source_channels))  # type: ignore[arg-type]
        return x, image.size

    def translate_batch(prepared: list[tuple[np.ndarray, tuple[int, int]]]) -> list[np.ndarray]:
        inputs = [x for x, _ in prepared]
        outputs: list[np.ndarray] = [np.empty(0)] * len(inputs)
        for shape in dict.fromkeys(x.shape for x in inputs):  # one model call per shape, in first-seen order
            group = [i for i, x in enumerate(inputs) if x.shape == shape]
            for i, y in zip(group, translate(np.stack([inputs[i] for i in group])).numpy(), strict=True):
                outputs[i] = y
        return [postprocess(y, image_size if size == "input" else None)
                for y, (_, image_size) in zip(outputs, prepared, strict=True)]

    return _run_jobs(jobs, batch_size, progress, prepare, translate_batch)


def translate_files_saved_model(export_dir: str | Path, jobs: Sequence[Job], direction: str = "a2b",
                                batch_size: int = 16, progress: bool = False) -> TranslationResult:
    """Translate with an exported model's `<direction>_encoded` signature (no run directory, no unit_tf model):
    each image decoded as training decodes it (EXIF applied) to the domain's channels, sent as PNG, written at
    its own size."""

    import tensorflow as tf

    from unit_tf.exported import encoded_signature
    from unit_tf.serving import BYTES_KEY, ENCODED_SUFFIX

    if direction not in DIRECTIONS:
        raise UserError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    source, target = DIRECTIONS[direction]
    serve, channels = encoded_signature(export_dir, f"{source}_to_{target}{ENCODED_SUFFIX}",
                                        "exported by an older version; export the run again with python -m "
                                        "unit_tf.export, or translate with --run-dir")

    def prepare(image: Image.Image) -> bytes:
        return encode_image(to_channels(image, channels), ".png")  # lossless, upright, the domain's channels

    def translate_batch(prepared: list[bytes]) -> list[np.ndarray]:
        encoded = serve(**{BYTES_KEY: tf.constant(prepared)})[BYTES_KEY].numpy()
        pixels = [np.asarray(Image.open(io.BytesIO(png))) for png in encoded]
        return [p[..., None] if p.ndim == 2 else p for p in pixels]

    return _run_jobs(jobs, batch_size, progress, prepare, translate_batch)


def translate_paths(model: UNIT, input_path: str | Path, output_dir: str | Path, direction: str = "a2b",
                    size: str = "input", batch_size: int = 16, overwrite: bool = False,
                    progress: bool = False, scale: int | None = None) -> TranslationResult:
    """Translate the image file or folder `input_path` into `output_dir` (same relative paths and names)."""
    jobs = plan_translation(input_path, output_dir, overwrite)
    return translate_files(model, jobs, direction, size, batch_size, progress, scale)


def skip_names(paths: Sequence[Path]) -> str:
    """The first few file names, and how many more."""
    names = ", ".join(p.name for p in paths[:NAMED_SKIPS])
    return names + (f", ... ({len(paths) - NAMED_SKIPS} more)" if len(paths) > NAMED_SKIPS else "")


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    from unit_tf.cli import ArgumentParser, non_negative_int, positive_int, quiet_tensorflow

    quiet_tensorflow()
    p = ArgumentParser(prog=prog, description="Translate image files with a trained UNIT run or an export.")
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument("--run-dir", help="the --output-dir of a train.py run (its latest checkpoint)")
    model.add_argument("--saved-model", metavar="DIR",
                       help="an export (saved_models/NAME/1, or NAME for its highest version) instead of a run")
    p.add_argument("--direction", required=True, choices=list(DIRECTIONS), help="a2b: domain A to B; b2a: back")
    p.add_argument("--input", required=True, help="an image file, or a folder searched recursively")
    p.add_argument("--output", required=True, help="folder for the translations (same relative paths and names)")
    p.add_argument("--size", default="input", choices=SIZES,
                   help="write at each input's own size (default) or at the size it was translated at")
    p.add_argument("--scale", type=positive_int, metavar="N",
                   help="residual networks: translate with shorter sides resized to N (default: the training scale)")
    p.add_argument("--batch-size", type=positive_int, default=16, help="images per model call (default 16)")
    p.add_argument("--overwrite", action="store_true", help="replace output files that already exist")
    p.add_argument("--step", type=non_negative_int,
                   help="use the checkpoint of this step (default: the latest; R/checkpoints/ckpt-<step>)")
    args = p.parse_args(argv)
    if args.saved_model:
        for flag, given in (("--step", args.step is not None), ("--scale", args.scale is not None),
                            ("--size model", args.size == "model")):
            if given:
                raise UserError(f"{flag} needs --run-dir: an export translates at the training scale and writes "
                                "each image at its own size; drop it or pass --run-dir")
        from unit_tf.exported import saved_model_version

        saved_model_version(args.saved_model)
    jobs = plan_translation(args.input, args.output, args.overwrite)  # before TensorFlow: fast refusals
    if args.saved_model:
        result = translate_files_saved_model(args.saved_model, jobs, args.direction, args.batch_size, progress=True)
    else:
        from unit_tf.runs import load_trained

        model, _, _ = load_trained(args.run_dir, args.step)
        result = translate_files(model, jobs, args.direction, args.size, args.batch_size, progress=True,
                                 scale=args.scale)
    if result.skipped:
        print(f"warning: skipped {len(result.skipped)} unreadable image(s): {skip_names(result.skipped)}",
              file=sys.stderr)
    source, target = DIRECTIONS[args.direction]
    print(f"Translated {len(result.written)} images ({source} -> {target}) to {args.output}")
    return 0


if __name__ == "__main__":
    from unit_tf.errors import run_cli

    run_cli(main, PROG)
