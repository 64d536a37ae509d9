"""SavedModel export for TF Serving (checked in a process that never imports unit_tf) and .keras files."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import tiny_config, tiny_translation_config

from unit_tf import export
from unit_tf.errors import UserError
from unit_tf.export import export_model, save_keras, signature_specs
from unit_tf.model import build_model


@pytest.fixture(scope="module")
def trained_model():
    model = build_model(tiny_config())
    batch = {"x_a": tf.random.uniform([8, 32, 32, 3], -1, 1, seed=1),
             "x_b": tf.random.uniform([8, 32, 32, 1], -1, 1, seed=2)}
    model.fit(tf.data.Dataset.from_tensors(batch).repeat(), epochs=1, steps_per_epoch=2, verbose=0, shuffle=False)
    return model


def run_tf_only_check(script: str, export_dir: Path, data: dict[str, np.ndarray], tmp_path: Path) -> dict:
    """Run `script` (argv: the export folder and an .npz of `data`) in a fresh interpreter that must never
    import unit_tf; returns the JSON report of its last stdout line, which says whether unit_tf was imported."""
    np.savez(tmp_path / "data.npz", **data)
    result = subprocess.run([sys.executable, "-c", script, str(export_dir), str(tmp_path / "data.npz")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert not report["unit_tf_imported"]
    return report


# Runs in a fresh interpreter with only TensorFlow (and tensorflow-serving-api) imported.
SERVING_CHECK = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    export_dir, data_path = sys.argv[1], sys.argv[2]
    data = np.load(data_path)
    loaded = tf.saved_model.load(export_dir)
    report = {"signatures": sorted(loaded.signatures.keys()), "max_abs_diff": {}, "ranges": {}}
    for name in ("a_to_b", "b_to_a", "reconstruct_a", "reconstruct_b", "serving_default"):
        fn = loaded.signatures[name]
        input_names = sorted(fn.structured_input_signature[1])
        source = "a" if name in ("a_to_b", "reconstruct_a", "serving_default") else "b"
        out = fn(images=tf.constant(data["x_" + source]))
        assert sorted(out) == ["images"], out.keys()
        y = out["images"]
        assert y.dtype == tf.float32
        expected = data["a_to_b" if name == "serving_default" else name]
        report["max_abs_diff"][name] = float(np.max(np.abs(y.numpy() - expected)))
        report["ranges"][name] = [float(tf.reduce_min(y)), float(tf.reduce_max(y))]
        report.setdefault("inputs", {})[name] = input_names
        # A gRPC PredictRequest against the signature's own input names.
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "unit"
        request.model_spec.signature_name = name
        for key in input_names:
            request.inputs[key].CopyFrom(tf.make_tensor_proto(data["x_" + source]))
        parsed = predict_pb2.PredictRequest.FromString(request.SerializeToString())
        arr = tf.make_ndarray(parsed.inputs["images"])
        spec = fn.structured_input_signature[1]["images"]
        assert spec.is_compatible_with(tf.TensorSpec(arr.shape, tf.as_dtype(arr.dtype))), (spec, arr.shape)
    # Wrong shapes raise a TensorFlow error; the process goes on.
    errors = []
    for bad in (np.zeros([2, 16, 16, 3], np.float32), np.zeros([2, 32, 32, 1], np.float32)):
        try:
            loaded.signatures["a_to_b"](images=tf.constant(bad))
            errors.append("no error")
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as err:
            errors.append(type(err).__name__)
    report["bad_input_errors"] = errors
    report["after_errors"] = loaded.signatures["a_to_b"](images=tf.constant(data["x_a"]))["images"].shape.as_list()
    report["unit_tf_imported"] = any(m.startswith("unit_tf") for m in sys.modules)
    print(json.dumps(report))
""")


def test_saved_model_serves_without_unit_tf(trained_model, tmp_path):
    target = export_model(trained_model, tmp_path / "unit")
    assert target == tmp_path / "unit" / "1"
    rng = np.random.default_rng(0)
    x_a = rng.uniform(0, 1, [3, 32, 32, 3]).astype(np.float32)
    x_b = rng.uniform(0, 1, [5, 32, 32, 1]).astype(np.float32)
    expected = {"x_a": x_a, "x_b": x_b}
    for name, spec in signature_specs(trained_model).items():
        x = (x_a if spec["source"] == "a" else x_b) * 2 - 1
        y = trained_model.translate(x, spec["source"], spec["target"])  # what evaluate.py computes
        expected[name] = ((y.numpy() + 1) / 2).clip(0, 1)
    report = run_tf_only_check(SERVING_CHECK, target, expected, tmp_path)
    assert {"a_to_b", "b_to_a", "reconstruct_a", "reconstruct_b", "serving_default"} <= set(report["signatures"])
    for name, diff in report["max_abs_diff"].items():
        assert diff <= 1e-5, (name, diff)
    for name, (low, high) in report["ranges"].items():
        assert 0.0 <= low <= high <= 1.0, name
    assert all(names == ["images"] for names in report["inputs"].values())
    assert report["bad_input_errors"] == ["InvalidArgumentError", "InvalidArgumentError"]
    assert report["after_errors"] == [3, 32, 32, 1]
    signatures = json.loads((target / "assets.extra" / "signatures.json").read_text())
    assert signatures["a_to_b"]["inputs"]["images"]["shape"] == [None, 32, 32, 3]


def test_versions_count_up_and_never_overwrite(trained_model, tmp_path):
    assert export_model(trained_model, tmp_path / "m").name == "1"
    assert export_model(trained_model, tmp_path / "m").name == "2"
    with pytest.raises(UserError, match="never overwritten"):
        export_model(trained_model, tmp_path / "m", version=1)
    assert export_model(trained_model, tmp_path / "m", version=7).name == "7"
    assert export_model(trained_model, tmp_path / "m").name == "8"


def test_failed_export_leaves_no_version(trained_model, tmp_path, monkeypatch):
    class Broken:
        def write_out(self, path, verbose=False):
            (tf.io.gfile.makedirs(path), open(f"{path}/saved_model.pb", "w").write("partial"))
            raise OSError("disk full")

    monkeypatch.setattr(export, "build_archive", lambda model: Broken())
    with pytest.raises(OSError):
        export_model(trained_model, tmp_path / "m")
    assert list((tmp_path / "m").iterdir()) == []


def test_keras_file_round_trip_continues_training(trained_model, tmp_path):
    path = save_keras(trained_model, tmp_path / "unit.keras")
    loaded = keras.models.load_model(path)
    before = {v.path: v.numpy() for v in trained_model.variables}
    for v in loaded.variables:
        np.testing.assert_array_equal(v.numpy(), before[v.path], err_msg=v.path)
    assert int(loaded.g_optimizer.iterations.numpy()) == 2
    x = {"x_a": tf.random.uniform([3, 32, 32, 3], -1, 1), "x_b": tf.random.uniform([3, 32, 32, 1], -1, 1)}
    np.testing.assert_allclose(loaded(x)["a_to_b"].numpy(), trained_model(x)["a_to_b"].numpy(), atol=1e-6)
    batch = {"x_a": tf.random.uniform([8, 32, 32, 3], -1, 1), "x_b": tf.random.uniform([8, 32, 32, 1], -1, 1)}
    loaded.fit(tf.data.Dataset.from_tensors(batch).repeat(), epochs=1, steps_per_epoch=1, verbose=0, shuffle=False)
    assert int(loaded.g_optimizer.iterations.numpy()) == 3
    with pytest.raises(UserError, match="already exists"):
        save_keras(trained_model, path)


# A fresh interpreter with TensorFlow only: the residual export at sizes other than the training size.
ANY_SIZE_CHECK = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf

    export_dir, data_path = sys.argv[1], sys.argv[2]
    data = np.load(data_path)
    loaded = tf.saved_model.load(export_dir)
    fn = loaded.signatures["a_to_b"]
    report = {"input_shape": fn.structured_input_signature[1]["images"].shape.as_list(), "outputs": {}}
    for key in ("wide", "square"):
        y = fn(images=tf.constant(data[key]))["images"].numpy()
        report["outputs"][key] = {"shape": list(y.shape), "range": [float(y.min()), float(y.max())],
                                  "max_abs_diff": float(np.abs(y - data[key + "_expected"]).max())}
    assert "unit_tf" not in sys.modules
    report["unit_tf_imported"] = any(m.startswith("unit_tf") for m in sys.modules)
    print(json.dumps(report))
""")


def test_residual_export_takes_any_height_and_width(tmp_path):
    model = build_model(tiny_translation_config())  # residual, trained at 16 x 16; n_downsample 2
    target = export_model(model, tmp_path / "unit")
    rng = np.random.default_rng(0)
    data = {"wide": rng.uniform(0, 1, [1, 50, 75, 3]).astype(np.float32),
            "square": rng.uniform(0, 1, [2, 64, 64, 3]).astype(np.float32)}
    for key in ("wide", "square"):
        y = model.translate_any_size(data[key] * 2 - 1, "a", "b")
        data[key + "_expected"] = ((y.numpy() + 1) / 2).clip(0, 1)
    report = run_tf_only_check(ANY_SIZE_CHECK, target, data, tmp_path)
    assert report["input_shape"] == [None, None, None, 3]
    assert report["outputs"]["wide"]["shape"] == [1, 50, 75, 3]
    assert report["outputs"]["square"]["shape"] == [2, 64, 64, 3]
    for out in report["outputs"].values():
        assert 0.0 <= out["range"][0] <= out["range"][1] <= 1.0
        assert out["max_abs_diff"] <= 1e-5
    signatures = json.loads((target / "assets.extra" / "signatures.json").read_text())
    for name in ("a_to_b", "b_to_a", "reconstruct_a", "reconstruct_b"):
        assert signatures[name]["inputs"]["images"]["shape"] == [None, None, None, 3]
        assert signatures[name]["outputs"]["images"]["shape"] == [None, None, None, 3]


def test_export_stores_each_weight_once(trained_model, tmp_path):
    """The SavedModel's variables hold every weight once (tracking the Keras model as well doubled them)."""
    target = export_model(trained_model, tmp_path / "m")
    stored = sum(f.stat().st_size for f in (target / "variables").glob("variables.data-*"))
    weights = sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in trained_model.weights)
    assert weights * 0.5 < stored <= weights * 1.05 + 4096, (stored, weights)
