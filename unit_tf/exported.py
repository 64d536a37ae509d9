"""An exported SavedModel used as a model: its float signatures called on uint8 images, and the run config the
export carries (`assets.extra/config.json`), so a shipped model can be measured without its run directory."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from unit_tf.config import UNITConfig
from unit_tf.errors import UserError
from unit_tf.serving import existing_versions

CONFIG_FILE = "config.json"


def saved_model_version(path: str | Path) -> Path:
    """The SavedModel folder for --saved-model: the folder itself, or a model folder's highest version (as
    TF Serving serves it)."""
    root = Path(path)
    if (root / "saved_model.pb").is_file():
        return root
    versions = existing_versions(root)
    if versions and (root / str(versions[-1]) / "saved_model.pb").is_file():
        return root / str(versions[-1])
    raise UserError(f"--saved-model {root} is not a SavedModel (no saved_model.pb) nor a folder of numbered "
                    "versions; pass an export such as saved_models/NAME/1")


def encoded_signature(path: str | Path, name: str, missing: str) -> tuple[Any, int]:
    """An export's encoded-image signature `name` and its input channels; a UserError ending in `missing` (what
    to do instead) when the export lacks it."""
    from unit_tf.serving import BYTES_KEY

    export_dir = saved_model_version(path)
    specs_path = export_dir / "assets.extra" / "signatures.json"
    specs = json.loads(specs_path.read_text()) if specs_path.is_file() else {}
    if name not in specs:
        raise UserError(f"{export_dir} has no {name} signature: {missing}")
    channels = specs[name]["inputs"][BYTES_KEY]["channels"]
    return tf.saved_model.load(str(export_dir)).signatures[name], channels


def _batches(images: np.ndarray, batch_size: int) -> list[np.ndarray]:
    return [images[i:i + batch_size] for i in range(0, len(images), batch_size)]


@dataclass
class ExportedModel:
    """A loaded export: `path` (the version folder), its signatures and the config it was trained with."""

    path: Path
    config: UNITConfig
    signatures: Any

    @classmethod
    def load(cls, path: str | Path) -> ExportedModel:
        path = saved_model_version(path)
        config_path = path / "assets.extra" / CONFIG_FILE
        if not config_path.is_file():
            raise UserError(f"{path} carries no assets.extra/{CONFIG_FILE} (exported by an older version); "
                            "export its run again with python -m unit_tf.export")
        config = UNITConfig.from_dict(json.loads(config_path.read_text()))
        return cls(path, config, tf.saved_model.load(str(path)).signatures)

    def _call(self, name: str, images: np.ndarray, key: str, batch_size: int) -> np.ndarray:
        fn = self.signatures[name]
        return np.concatenate([fn(images=tf.constant(x, tf.float32) / 255.0)[key].numpy()
                               for x in _batches(images, batch_size)])

    def translate_uint8(self, images: np.ndarray, source: str, target: str, batch_size: int = 64) -> np.ndarray:
        """uint8 images of `source` through signature `<source>_to_<target>` (or `reconstruct_<source>`), uint8."""
        name = f"reconstruct_{source}" if source == target else f"{source}_to_{target}"
        y = self._call(name, images, "images", batch_size)
        return np.clip(np.round(y * 255.0), 0, 255).astype(np.uint8)

    def predict_classes(self, images: np.ndarray, domain: str, batch_size: int = 500) -> np.ndarray:
        """Class index of each uint8 image through signature `classify_<domain>`."""
        if f"classify_{domain}" not in self.signatures:
            raise UserError(f"{self.path} has no classify_{domain} signature (not a domain-adaptation model)")
        return self._call(f"classify_{domain}", images, "classes", batch_size)
