"""Classify image files with an exported domain-adaptation model (no run directory):

    python -m unit_tf.classify --saved-model saved_models/mnist_usps/1 --domain b --input DIR_OR_FILE [--output CSV]

Each jpg/jpeg/png/bmp/webp/gif under --input (recursively) is decoded as training decodes it (EXIF orientation
applied, the domain's channels), sent as PNG to the export's `classify_<domain>_encoded` signature (which
squashes it to the networks' size), and reported as one CSV row: path, class index, class name, probability.
Domain b is the target domain the model was adapted to; a is its labelled source. Rows go to stdout, or to
--output (never replacing an existing file).
"""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

from unit_tf.data.image_files import UnreadableImage, is_image_file, list_images, load_image, to_channels
from unit_tf.errors import UserError
from unit_tf.translate import encode_image

PROG = "python -m unit_tf.classify"
HEADER = ("path", "class", "name", "probability")
BATCH = 64


def input_files(path: str | Path) -> list[Path]:
    """The image files of --input: the file itself, or every image under the folder."""
    path = Path(path)
    if path.is_dir():
        files = list_images(path)
        if not files:
            raise UserError(f"--input {path} holds no images; pass a folder that contains some")
        return files
    if not path.is_file() or not is_image_file(path):
        raise UserError(f"--input {path} is not an image file or a folder; pass one")
    return [path]


def classify_files(export_dir: str | Path, domain: str, files: list[Path]) -> tuple[list[tuple], list[Path]]:
    """(rows of HEADER, unreadable files) for `files` through the export's classify_<domain>_encoded."""

    import numpy as np
    import tensorflow as tf

    from unit_tf.exported import encoded_signature
    from unit_tf.serving import BYTES_KEY, ENCODED_SUFFIX

    serve, channels = encoded_signature(export_dir, f"classify_{domain}{ENCODED_SUFFIX}",
                                        "not a domain-adaptation model, or exported by an older version (export "
                                        "its run again with python -m unit_tf.export)")
    rows, skipped = [], []
    for start in range(0, len(files), BATCH):
        encoded, kept = [], []
        for path in files[start:start + BATCH]:
            try:
                pixels = to_channels(load_image(path), channels)
            except UnreadableImage:
                skipped.append(path)
                continue
            encoded.append(encode_image(pixels, ".png"))  # lossless, upright, the domain's channels
            kept.append(path)
        if not encoded:
            continue
        out = serve(**{BYTES_KEY: tf.constant(encoded)})
        classes = out["classes"].numpy()
        probabilities = np.take_along_axis(out["probabilities"].numpy(), classes[:, None], 1)[:, 0]
        names = [n.decode() for n in out["names"].numpy()] if "names" in out else [str(c) for c in classes]
        rows += [(str(p), int(c), n, round(float(q), 4)) for p, c, n, q in zip(kept, classes, names, probabilities,
                                                                             strict=True)]
    if not rows:
        raise UserError(f"none of the {len(files)} input image(s) could be read; pass valid image files")
    return rows, skipped


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    from unit_tf.cli import ArgumentParser, quiet_tensorflow

    quiet_tensorflow()
    p = ArgumentParser(prog=prog, description="Classify image files with an exported domain-adaptation model.")
    p.add_argument("--saved-model", required=True, metavar="DIR",
                   help="an export (saved_models/NAME/1, or NAME for its highest version)")
    p.add_argument("--domain", default="b", choices=["a", "b"],
                   help="b (default): the target domain the model was adapted to; a: its labelled source")
    p.add_argument("--input", required=True, help="an image file, or a folder searched recursively")
    p.add_argument("--output", metavar="CSV", help="write the rows to this new file instead of stdout")
    args = p.parse_args(argv)
    if args.output and Path(args.output).exists():
        raise UserError(f"--output {args.output} already exists; choose a new file name")
    files = input_files(args.input)
    rows, skipped = classify_files(args.saved_model, args.domain, files)
    if skipped:
        print(f"warning: skipped {len(skipped)} unreadable image(s): {', '.join(p.name for p in skipped[:5])}",
              file=sys.stderr)
    with open(args.output, "x", newline="") if args.output else io.StringIO() as stream:
        writer = csv.writer(stream)
        writer.writerow(HEADER)
        writer.writerows(rows)
        if not args.output:
            sys.stdout.write(stream.getvalue())
    return 0


if __name__ == "__main__":
    from unit_tf.errors import run_cli

    run_cli(main, PROG)
