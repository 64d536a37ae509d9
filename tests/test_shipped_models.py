"""The pretrained models in saved_models/: sizes, cards, and every signature called from a process that never
imports unit_tf (names, shapes and dtypes as assets.extra/signatures.json says)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from helpers import ROOT

SAVED = ROOT / "saved_models"
CARDS = sorted(SAVED.glob("*/card.json"))
MB = 1024 * 1024

# Fresh interpreter, TensorFlow only: call every signature once with a grey input of the training size.
CHECK = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf

    export_dir, size = sys.argv[1], int(sys.argv[2])
    specs = json.load(open(export_dir + "/assets.extra/signatures.json"))
    loaded = tf.saved_model.load(export_dir)
    report = {"signatures": sorted(loaded.signatures), "calls": {}}
    for name, spec in specs.items():
        fn = loaded.signatures[name]
        (key, tensor), = spec["inputs"].items()
        declared = fn.structured_input_signature[1][key]
        if tensor["dtype"] == "string":
            png = tf.io.encode_png(tf.fill([size, size + 3, tensor["channels"]], tf.constant(128, tf.uint8)))
            x = tf.stack([png, png])
        else:
            _, h, w, c = tensor["shape"]
            x = tf.fill([2, h or size, w or size, c], 0.5)
        out = fn(**{key: x})
        shapes = {}
        for k, v in out.items():
            if k == "image_bytes":
                shapes[k] = [list(tf.io.decode_png(b).shape) for b in v.numpy()]
            else:
                shapes[k] = v.shape.as_list()
        report["calls"][name] = {"input": [declared.dtype.name, declared.shape.as_list()],
                                 "outputs": {k: [v.dtype.name, shapes[k]] for k, v in out.items()}}
    report["unit_tf_imported"] = any(m.startswith("unit_tf") for m in sys.modules)
    print(json.dumps(report))
""")


def test_models_are_shipped_within_the_size_limits():
    assert CARDS, "no shipped model (saved_models/*/card.json)"
    sizes = {card.parent.name: sum(f.stat().st_size for f in card.parent.rglob("*") if f.is_file()) for card in CARDS}
    assert all(size <= 15 * MB for size in sizes.values()), sizes
    assert sum(sizes.values()) <= 40 * MB, sizes


@pytest.mark.parametrize("card_path", CARDS, ids=[c.parent.name for c in CARDS])
def test_card_names_its_command_commit_metrics_and_export(card_path):
    card = json.loads(card_path.read_text())
    folder = card_path.parent
    assert card["name"] == folder.name
    export = folder / str(card["version"])
    assert (export / "saved_model.pb").is_file() and (export / "assets.extra" / "config.json").is_file()
    assert (export / "assets.extra" / "tf_serving_warmup_requests").is_file()
    training = card["training"]
    assert {"command", "commit", "steps", "seed", "hardware", "train_seconds"} <= set(training)
    assert card["metrics"] and all(isinstance(v, float) for v in card["metrics"].values())
    assert card["evaluate"][:2] == ["--saved-model", f"saved_models/{folder.name}/{card['version']}"]
    text = (folder / "MODEL.md").read_text()
    for section in ("## Use", "## Training", "## Measured", "## Limits", training["commit"]):
        assert section in text, section


@pytest.mark.parametrize("card_path", CARDS, ids=[c.parent.name for c in CARDS])
def test_every_signature_answers_in_a_tf_only_process(card_path):
    card = json.loads(card_path.read_text())
    export = card_path.parent / str(card["version"])
    config = json.loads((export / "assets.extra" / "config.json").read_text())
    size = config["model"]["image_size"]
    result = subprocess.run([sys.executable, "-c", CHECK, str(export), str(size)], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert not report["unit_tf_imported"]
    specs = json.loads((export / "assets.extra" / "signatures.json").read_text())
    assert set(specs) <= set(report["signatures"]) and "serving_default" in report["signatures"]
    for name, spec in specs.items():
        call = report["calls"][name]
        (tensor,) = spec["inputs"].values()
        assert call["input"] == [tensor["dtype"], tensor["shape"]], name
        for key, out in spec["outputs"].items():
            dtype, shape = call["outputs"][key]
            assert dtype == out["dtype"], (name, key)
            if key == "image_bytes":  # PNGs at the input's size, the target's channels
                assert shape == [[size, size + 3, out["channels"]]] * 2, (name, shape)
            else:
                assert len(shape) == len(out["shape"]) and shape[0] == 2, (name, shape)
