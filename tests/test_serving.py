"""Serving as clients call it: encoded-image signatures, REST JSON and gRPC bodies, warm-up requests — all
checked against the exported SavedModel in a process that never imports unit_tf."""

from __future__ import annotations

import io
import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from helpers import tiny_translation_config
from PIL import Image
from test_adaptation import da_config
from test_export import run_tf_only_check

from unit_tf.errors import UserError
from unit_tf.export import export_model, signature_specs
from unit_tf.model import build_model
from unit_tf.serving import prediction_log
from unit_tf.translate import translate_paths

# Runs in a fresh interpreter with only TensorFlow and tensorflow-serving-api. TF Serving's own mapping of a
# request onto a signature is emulated: REST row format (one named input: `instances` is the list of its
# values; {"b64": ...} objects are decoded to bytes; string outputs whose name ends in `_bytes` come back as
# {"b64": ...}; with one output `predictions` lists its bare values, with several one object per instance:
# tensorflow_serving/util/json_tensor.cc), gRPC (PredictRequest.inputs by name -> tensors, outputs ->
# PredictResponse.outputs).
CLIENT_CHECK = textwrap.dedent("""
    import base64, json, sys
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    export_dir, data_path = sys.argv[1], sys.argv[2]
    data = np.load(data_path, allow_pickle=True)
    loaded = tf.saved_model.load(export_dir)
    report = {"signatures": sorted(loaded.signatures.keys()), "rest": {}, "grpc": {}, "warmup": []}

    def serve_rest(body):
        request = json.loads(body)
        fn = loaded.signatures[request["signature_name"]]
        (name, spec), = fn.structured_input_signature[1].items()
        values = [base64.b64decode(v["b64"]) if isinstance(v, dict) else v for v in request["instances"]]
        out = fn(**{name: tf.constant(values, dtype=spec.dtype)})
        rows = []
        for i in range(len(values)):
            row = {}
            for key, tensor in out.items():
                value = tensor.numpy()[i]
                if key.endswith("_bytes"):
                    row[key] = {"b64": base64.b64encode(value).decode()}
                else:  # other strings (the class names) as JSON strings, numbers as numbers
                    row[key] = value.decode() if isinstance(value, bytes) else value.tolist()
            rows.append(row if len(row) > 1 else row.popitem()[1])  # one output: its bare values
        return json.dumps({"predictions": rows})

    def serve_grpc(serialized):
        request = predict_pb2.PredictRequest.FromString(serialized)
        fn = loaded.signatures[request.model_spec.signature_name]
        out = fn(**{k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()})
        response = predict_pb2.PredictResponse()
        for key, tensor in out.items():
            response.outputs[key].CopyFrom(tf.make_tensor_proto(tensor.numpy()))
        return response.SerializeToString()

    for name in json.loads(str(data["signatures"])):
        encoded = [bytes(b) for b in data["inputs"]]
        # REST: a client's JSON body, as the README writes it.
        body = json.dumps({"signature_name": name,
                           "instances": [{"b64": base64.b64encode(b).decode()} for b in encoded]})
        predictions = json.loads(serve_rest(body))["predictions"]
        # gRPC: a PredictRequest, as the README's Python client builds it.
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "unit"
        request.model_spec.signature_name = name
        request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto(encoded))
        response = predict_pb2.PredictResponse.FromString(serve_grpc(request.SerializeToString()))
        if "b64" in predictions[0]:  # translations: one output, PNG bytes
            rest = [tf.io.decode_png(base64.b64decode(p["b64"])).numpy() for p in predictions]
            grpc = [tf.io.decode_png(b).numpy() for b in tf.make_ndarray(response.outputs["image_bytes"])]
            report["rest"][name] = [r.tolist() for r in rest]
            report["grpc"][name] = [g.tolist() for g in grpc]
        else:
            report["rest"][name] = [[p["classes"], p["names"]] for p in predictions]
            report["grpc"][name] = [[int(c), n.decode()] for c, n in zip(tf.make_ndarray(response.outputs["classes"]),
                                                                           tf.make_ndarray(response.outputs["names"]))]
    # Warm-up: every record parses as a PredictionLog and runs on its signature.
    for record in tf.data.TFRecordDataset(export_dir + "/assets.extra/tf_serving_warmup_requests"):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        request = log.predict_log.request
        fn = loaded.signatures[request.model_spec.signature_name]
        out = fn(**{k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()})
        report["warmup"].append([request.model_spec.signature_name, sorted(request.inputs), sorted(out)])
    report["unit_tf_imported"] = any(m.startswith("unit_tf") for m in sys.modules)
    print(json.dumps(report))
""")


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels.squeeze(-1) if pixels.shape[-1] == 1 else pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def test_encoded_signatures_match_translate_and_serve_rest_grpc_and_warmup(tmp_path):
    model = build_model(tiny_translation_config())
    target = export_model(model, tmp_path / "unit")
    rng = np.random.default_rng(0)
    # Non-square, different sizes in one batch, one gray PNG (decoded to the domain's RGB) and a JPEG.
    images = [rng.integers(0, 256, [21, 34, 3], dtype=np.uint8), rng.integers(0, 256, [40, 18, 1], dtype=np.uint8),
              rng.integers(0, 256, [25, 25, 3], dtype=np.uint8)]
    encoded = [png(images[0]), png(images[1]), jpeg(images[2])]
    # What `python -m unit_tf.translate --size input` writes for the same files.
    (tmp_path / "in").mkdir()
    for i, data in enumerate(encoded):
        (tmp_path / "in" / f"{i}.{'jpg' if i == 2 else 'png'}").write_bytes(data)
    expected = {}
    for direction, name in (("a2b", "a_to_b_encoded"), ("b2a", "b_to_a_encoded")):
        translate_paths(model, tmp_path / "in", tmp_path / direction, direction=direction)
        expected[name] = [np.asarray(Image.open(tmp_path / direction / f"{i}.{'jpg' if i == 2 else 'png'}"))
                          for i in range(3)]
    names = ["a_to_b_encoded", "b_to_a_encoded", "reconstruct_a_encoded"]
    data = {"inputs": np.array(encoded, dtype=object), "signatures": json.dumps(names)}
    report = run_tf_only_check(CLIENT_CHECK, target, data, tmp_path)

    assert {"a_to_b", "a_to_b_encoded", "b_to_a_encoded", "reconstruct_a_encoded",
            "reconstruct_b_encoded"} <= set(report["signatures"])
    for name in names:
        rest = [np.array(r, np.uint8) for r in report["rest"][name]]
        assert [r.shape for r in rest] == [(21, 34, 3), (40, 18, 3), (25, 25, 3)]  # the inputs' sizes
        assert all(np.array_equal(r, g) for r, g in zip(rest, report["grpc"][name], strict=True))
        if name in expected:
            for got, want in zip(rest[:2], expected[name][:2], strict=True):  # PNGs: lossless
                assert np.abs(got.astype(int) - want.astype(int)).max() <= 1, name
    # One warm-up request per signature (serving_default is a_to_b), each answered.
    warmed = sorted(name for name, _, _ in report["warmup"])
    assert warmed == sorted(signature_specs(model))
    assert all(inputs in (["images"], ["image_bytes"]) for _, inputs, _ in report["warmup"])


def test_encoded_classify_matches_the_float_signature(tmp_path):
    model = build_model(da_config())
    target = export_model(model, tmp_path / "unit")
    rng = np.random.default_rng(1)
    size = model.unit_config.model.image_size
    images = [rng.integers(0, 256, [size, size, 1], dtype=np.uint8) for _ in range(4)]
    data = {"inputs": np.array([png(x) for x in images], dtype=object),
            "signatures": json.dumps(["classify_a_encoded", "classify_b_encoded"])}
    report = run_tf_only_check(CLIENT_CHECK, target, data, tmp_path)
    floats = tf.constant(np.stack(images).astype(np.float32) / 255.0)
    for domain in ("a", "b"):
        # What the signature computes: D_b's prediction averaged over colour variants (digits_da_small's
        # test-time jitter), whose class may differ from one pass's.
        probabilities = model.class_probabilities(floats * 2.0 - 1.0, domain, model.test_time_jitter(domain))
        want = [[int(k), str(k)] for k in np.argmax(probabilities.numpy(), -1)]  # digit runs: class k is named "k"
        assert report["rest"][f"classify_{domain}_encoded"] == want
        assert report["grpc"][f"classify_{domain}_encoded"] == want


@pytest.mark.parametrize("inputs", [{"images": np.zeros([1, 4, 5, 3], np.float32)},
                                    {"image_bytes": np.array([b"\x89PNG", b"x" * 300], dtype=object)}])
def test_hand_written_warmup_proto_equals_the_real_one(inputs):
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    want = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(
        request=predict_pb2.PredictRequest()))
    want.predict_log.request.model_spec.signature_name = "a_to_b_encoded"
    for key, value in inputs.items():
        want.predict_log.request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    got = prediction_log_pb2.PredictionLog.FromString(prediction_log("a_to_b_encoded", inputs))
    assert got == want



def test_translate_with_a_saved_model_equals_translate_with_the_run(tmp_path):
    from unit_tf import translate

    model = build_model(tiny_translation_config())
    export_model(model, tmp_path / "models" / "unit")  # version 1; --saved-model gets the model folder
    rng = np.random.default_rng(2)
    (tmp_path / "in" / "sub").mkdir(parents=True)
    Image.fromarray(rng.integers(0, 256, [23, 37, 3], dtype=np.uint8)).save(tmp_path / "in" / "wide.png")
    Image.fromarray(rng.integers(0, 256, [30, 19], dtype=np.uint8)).save(tmp_path / "in" / "sub" / "gray.bmp")
    rotated = Image.fromarray(rng.integers(0, 256, [20, 28, 3], dtype=np.uint8))
    exif = rotated.getexif()
    exif[0x0112] = 6  # EXIF orientation: rotate 90 degrees on display
    rotated.save(tmp_path / "in" / "rotated.png", exif=exif)
    assert translate.main(["--saved-model", str(tmp_path / "models" / "unit"), "--direction", "b2a",
                           "--input", str(tmp_path / "in"), "--output", str(tmp_path / "served")]) == 0
    translate_paths(model, tmp_path / "in", tmp_path / "run", direction="b2a")
    for name, size in (("wide.png", (37, 23)), ("sub/gray.bmp", (19, 30)), ("rotated.png", (20, 28))):
        served, run = (Image.open(tmp_path / d / name) for d in ("served", "run"))
        assert served.size == run.size == size, name  # its own size, upright (EXIF applied)
        diff = np.abs(np.asarray(served, int) - np.asarray(run, int))
        assert diff.max() <= 1, name


def test_translate_saved_model_refuses_what_it_cannot_do(tmp_path):
    from unit_tf import translate

    (tmp_path / "in").mkdir()
    Image.fromarray(np.zeros([8, 8, 3], np.uint8)).save(tmp_path / "in" / "x.png")
    base = ["--direction", "a2b", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")]
    with pytest.raises(UserError, match="not a SavedModel"):
        translate.main(["--saved-model", str(tmp_path), *base])
    for extra in (["--step", "3"], ["--scale", "40"], ["--size", "model"]):
        with pytest.raises(UserError, match="needs --run-dir"):
            translate.main(["--saved-model", str(tmp_path), *base, *extra])
    assert not (tmp_path / "out").exists()


def test_classify_command_names_the_class_of_each_file(tmp_path, capsys):
    from unit_tf import classify

    model = build_model(da_config())
    export_model(model, tmp_path / "saved")
    rng = np.random.default_rng(3)
    size = model.unit_config.model.image_size
    images = [rng.integers(0, 256, [size, size, 1], dtype=np.uint8) for _ in range(3)]
    (tmp_path / "in" / "sub").mkdir(parents=True)
    for i, x in enumerate(images):
        Image.fromarray(x[..., 0]).save(tmp_path / "in" / ("sub" if i == 2 else "") / f"{i}.png")
    (tmp_path / "in" / "broken.png").write_bytes(b"not an image")
    assert classify.main(["--saved-model", str(tmp_path / "saved"), "--input", str(tmp_path / "in")]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert rows[0] == "path,class,name,probability" and len(rows) == 4
    logits = model.classify(tf.constant(np.stack(images).astype(np.float32) / 127.5 - 1.0), "b", training=False)
    want = np.argmax(logits.numpy(), -1)
    by_file = {Path(r.split(",")[0]).name: r.split(",") for r in rows[1:]}
    for i, cls in enumerate(want):
        path, index, name, probability = by_file[f"{i}.png"]
        assert int(index) == cls and name == str(cls) and 0.0 < float(probability) <= 1.0
    with pytest.raises(UserError, match="already exists"):
        classify.main(["--saved-model", str(tmp_path / "saved"), "--input", str(tmp_path / "in"),
                       "--output", str(tmp_path / "in" / "0.png")])
    translation = build_model(tiny_translation_config())
    export_model(translation, tmp_path / "photo")
    with pytest.raises(UserError, match="not a domain-adaptation model"):
        classify.main(["--saved-model", str(tmp_path / "photo"), "--input", str(tmp_path / "in")])
