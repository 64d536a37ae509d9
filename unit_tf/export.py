"""Export a trained run as a SavedModel for TensorFlow Serving: `<output>/<version>/` with named signatures.

    python -m unit_tf.export --run-dir R --output saved_models/NAME [--version N] [--keras FILE] [--step N]

Signatures (all deterministic: the latent mean, no sampling noise; inference-mode batch norm):
    a_to_b (also serving_default), b_to_a, reconstruct_a, reconstruct_b
        input  `images` float32 [batch, H, W, C_source], values in [0, 1]
        output `images` float32 [batch, H, W, C_target], values in [0, 1]
    classify_a, classify_b (domain-adaptation runs: the classifier through D_a / D_b)
        input  `images` as above, of that domain
        output `probabilities` float32 [batch, num_classes], `classes` int32 [batch] (the class index),
               `names` string [batch] (the class name: a digit, or dataset "da"'s source class folder)
    <each of the above>_encoded: the same over encoded images (unit_tf.serving)
        input  `image_bytes` string [batch]: JPEG / PNG / BMP / GIF bytes
        output `image_bytes` string [batch]: PNG bytes at the input's size (classify: as above)
The batch dimension is free and C is the domain's channels. Residual (translation) networks are fully
convolutional: H and W are free too (each at least 2^model.n_downsample; the signature reflect-pads them to a
multiple of it and crops the result back), and the images are translated at the size given (resize them
first: training resized shorter sides to data.load_size; the encoded signatures do this themselves). Digit
networks take H = W = the training size. assets.extra/signatures.json lists every signature's shapes (null:
free) and the classifier's class names; assets.extra/tf_serving_warmup_requests one warm-up request per
signature; assets.extra/config.json the run's config (what `evaluate.py --saved-model` measures it with).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from unit_tf.config import class_names
from unit_tf.errors import UserError
from unit_tf.exported import CONFIG_FILE
from unit_tf.model import UNIT
from unit_tf.serving import (
    BYTES_KEY,
    ENCODED_SUFFIX,
    encoded_classify_fn,
    encoded_translation_fn,
    existing_versions,
    write_warmup_requests,
)


def next_version(root: Path) -> int:
    versions = existing_versions(root)
    return versions[-1] + 1 if versions else 1


def signature_specs(model: UNIT) -> dict[str, dict[str, Any]]:
    """Name -> source domain, target domain, input and output shapes (None: free) of every exported signature."""
    cfg = model.unit_config.model
    size = cfg.image_size
    free = None if model.size_multiple else size  # translations: any height and width if fully convolutional
    channels = {"a": cfg.channels_a, "b": cfg.channels_b}
    pairs = {"a_to_b": ("a", "b"), "b_to_a": ("b", "a"), "reconstruct_a": ("a", "a"), "reconstruct_b": ("b", "b")}
    specs = {
        name: {
            "source": source,
            "target": target,
            "inputs": {"images": {"dtype": "float32", "shape": [None, free, free, channels[source]],
                                  "range": [0.0, 1.0]}},
            "outputs": {"images": {"dtype": "float32", "shape": [None, free, free, channels[target]],
                                   "range": [0.0, 1.0]}},
        }
        for name, (source, target) in pairs.items()
    }
    if model.classifier_head is not None:
        for domain in ("a", "b"):
            specs[f"classify_{domain}"] = {
                "source": domain,
                "inputs": {"images": {"dtype": "float32", "shape": [None, size, size, channels[domain]],
                                      "range": [0.0, 1.0]}},
                "outputs": {"probabilities": {"dtype": "float32", "shape": [None, cfg.num_classes]},
                            "classes": {"dtype": "int32", "shape": [None]},
                            "names": {"dtype": "string", "shape": [None]}},
                "class_names": class_names(model.unit_config),
            }
    for name, spec in list(specs.items()):
        source = {"dtype": "string", "shape": [None], "channels": channels[spec["source"]],
                  "format": "JPEG, PNG, BMP or GIF bytes"}
        encoded = {**spec, "inputs": {BYTES_KEY: source}}
        if "target" in spec:
            encoded["outputs"] = {BYTES_KEY: {"dtype": "string", "shape": [None], "channels": channels[spec["target"]],
                                              "format": "PNG bytes, the input's width x height"}}
        specs[name + ENCODED_SUFFIX] = encoded
    return specs


def _translation_fn(model: UNIT, source: str, target: str) -> Callable[[tf.Tensor], dict[str, tf.Tensor]]:
    def serve(images: tf.Tensor) -> dict[str, tf.Tensor]:
        x = images * 2.0 - 1.0  # [0, 1] -> the model's [-1, 1]
        if model.size_multiple:
            y = model.translate_any_size(x, source, target)
        else:
            y = model.translate(x, source, target, training=False)
        return {"images": tf.clip_by_value((tf.cast(y, tf.float32) + 1.0) / 2.0, 0.0, 1.0)}

    size = "any size" if model.size_multiple else "the training size"
    serve.__doc__ = (f"Domain {source} -> {target}: images float32 [batch, H, W, C] in [0, 1] at {size}; "
                     "returns images in [0, 1] of the same H, W.")
    return serve


def _classify_fn(model: UNIT, domain: str) -> Callable[[tf.Tensor], dict[str, tf.Tensor]]:
    names = class_names(model.unit_config)

    def serve(images: tf.Tensor) -> dict[str, tf.Tensor]:
        probabilities = model.class_probabilities(images * 2.0 - 1.0, domain, model.test_time_jitter(domain))
        classes = tf.argmax(probabilities, -1, output_type=tf.int32)
        return {"probabilities": probabilities, "classes": classes,
                "names": tf.gather(tf.constant(names), classes)}

    serve.__doc__ = f"Class (index and name) of domain-{domain} images float32 [batch, H, W, C] in [0, 1]."
    return serve


def _serving_fn(model: UNIT, name: str, spec: dict[str, Any]) -> Callable[[tf.Tensor], dict[str, tf.Tensor]]:
    """The function behind signature `name` (float or encoded images)."""
    fn = (_translation_fn(model, spec["source"], spec["target"]) if "target" in spec
          else _classify_fn(model, spec["source"]))
    if not name.endswith(ENCODED_SUFFIX):
        return fn
    cfg = model.unit_config
    channels = spec["inputs"][BYTES_KEY]["channels"]
    if "target" not in spec:
        return encoded_classify_fn(fn, channels, cfg.model.image_size)
    from unit_tf.translate import training_scale

    if model.size_multiple:  # fully convolutional: shorter side to the training scale, aspect kept
        return encoded_translation_fn(fn, channels, training_scale(cfg), None)
    return encoded_translation_fn(fn, channels, None, cfg.model.image_size)


def build_archive(model: UNIT) -> keras.export.ExportArchive:
    """An ExportArchive whose first endpoint (`a_to_b`) is also `serving_default`."""
    archive = keras.export.ExportArchive()
    # No archive.track(model): add_endpoint tracks the variables the endpoints use, and tracking the model too
    # stores every weight twice (its Keras variables and their tf.Variables): a 2x larger export.
    for name, spec in signature_specs(model).items():
        (key, tensor), = spec["inputs"].items()
        dtype = tf.string if tensor["dtype"] == "string" else tf.float32
        archive.add_endpoint(name=name, fn=_serving_fn(model, name, spec),
                             input_signature=[tf.TensorSpec(tensor["shape"], dtype, name=key)])
    return archive


def export_model(model: UNIT, output: str | Path, version: int | None = None) -> Path:
    """Write `output/<version>/` (next free integer by default); never overwrites, never leaves a partial version.

    The SavedModel is written under a hidden temporary name (which TF Serving ignores) and renamed into place.
    """
    root = Path(output)
    if root.exists() and not root.is_dir():
        raise UserError(f"--output {root} is a file; give a folder for the model's versions")
    if version is not None and version <= 0:
        raise UserError(f"--version must be a positive integer, got {version}")
    version = version or next_version(root)
    target = root / str(version)
    if target.exists():
        raise UserError(f"{target} already exists and versions are never overwritten; omit --version to "
                        f"write version {next_version(root)}")
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-{version}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        build_archive(model).write_out(str(tmp), verbose=False)
        extra = tmp / "assets.extra"
        extra.mkdir(exist_ok=True)
        (extra / CONFIG_FILE).write_text(model.unit_config.to_json() + "\n")  # unit_tf.exported reads it
        specs = signature_specs(model)
        (extra / "signatures.json").write_text(json.dumps(specs, indent=2) + "\n")
        write_warmup_requests(tmp, specs, model.unit_config.model.image_size)
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def main(argv: list[str] | None = None, prog: str = "python -m unit_tf.export") -> int:
    from unit_tf.cli import ArgumentParser, non_negative_int, positive_int, quiet_tensorflow

    quiet_tensorflow()
    p = ArgumentParser(prog=prog, description="Export a run for TensorFlow Serving.")
    p.add_argument("--run-dir", required=True, help="the --output-dir of a train.py run")
    p.add_argument("--output", required=True, help="model folder; the export goes to OUTPUT/<version>/")
    p.add_argument("--version", type=positive_int, help="version number (default: the next free one)")
    p.add_argument("--keras", metavar="FILE", help="also save the full model (with optimizers) as a .keras file")
    p.add_argument("--step", type=non_negative_int,
                   help="use the checkpoint of this step (default: the latest; R/checkpoints/ckpt-<step>)")
    args = p.parse_args(argv)
    from unit_tf.runs import load_trained

    model, _, step = load_trained(args.run_dir, args.step)
    if args.keras:
        save_keras(model, args.keras)
        print(f"Saved {args.keras}")
    target = export_model(model, args.output, args.version)
    print(f"Exported step {step} to {target}")
    return 0


def save_keras(model: UNIT, path: str | Path) -> Path:
    """Save the whole model (config, weights, both optimizers) as a `.keras` file; refuses to overwrite."""
    path = Path(path)
    if path.suffix != ".keras":
        raise UserError(f"{path} must end in .keras")
    if path.exists():
        raise UserError(f"{path} already exists; choose a new file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return path


if __name__ == "__main__":
    from unit_tf.errors import run_cli

    run_cli(main, "python -m unit_tf.export")
