"""Finding image files in folders (no TensorFlow: the translate command refuses bad paths before importing it)."""

from __future__ import annotations

import os
from pathlib import Path

from unit_tf.errors import UserError

#: What counts as an image file (matched case-insensitively).
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif")


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def _walk(folder: Path) -> list[Path]:
    """Every file under `folder`, following linked folders once (a link loop is visited once)."""
    files, seen = [], set()
    for root, dirs, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        files.extend(Path(root) / n for n in names)
    return files


def list_images(folder: str | Path) -> list[Path]:
    """Every file with an image extension under `folder`, recursively, sorted by relative path."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise UserError(f"image folder {folder} does not exist; pass an existing folder")
    found = [p for p in _walk(folder) if is_image_file(p) and p.is_file()]
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())
