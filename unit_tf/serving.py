"""What TF Serving clients send as it is: signatures over encoded images, and the export's warm-up requests.

Encoded-image signatures (`<name>_encoded` beside every float signature of unit_tf.export):
    input  `image_bytes` string [batch]: JPEG / PNG / BMP / GIF bytes (base64 `{"b64": ...}` in REST JSON)
    output `image_bytes` string [batch]: PNG bytes, the translation at the input's own width x height
           (classify_*_encoded: the float signature's outputs)
TF Serving's REST API base64-encodes string outputs whose name ends in `_bytes`, hence the names. Each image is
decoded to the source domain's channels and resized as `python -m unit_tf.translate` resizes it: the shorter side
to the training scale (residual networks, aspect ratio kept) or squashed to S x S (digit networks).

`assets.extra/tf_serving_warmup_requests` holds one PredictionLog per signature, which TF Serving replays when it
loads a version so the first client request does not pay for graph initialization. The protos are written
by hand (a few length-delimited fields) so exporting needs no tensorflow-serving-api; the tests parse them with
its real message classes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from unit_tf.data.image_files import resize, resize_shorter_side

VERSION_PATTERN = re.compile(r"^\d+$")
ENCODED_SUFFIX = "_encoded"
BYTES_KEY = "image_bytes"
WARMUP_FILE = "tf_serving_warmup_requests"
#: Grey level of the warm-up images (uint8).
WARMUP_GREY = 128


def existing_versions(root: Path) -> list[int]:
    """Integer version folders under a model folder (what TF Serving watches)."""
    if not root.is_dir():
        return []
    return sorted(int(p.name) for p in root.iterdir() if p.is_dir() and VERSION_PATTERN.match(p.name))


def decode(image_bytes: tf.Tensor, channels: int) -> tf.Tensor:
    """One encoded image (scalar string) -> uint8 [H, W, channels]; a GIF's first frame; alpha dropped."""
    image = tf.io.decode_image(image_bytes, channels=channels, expand_animations=False)
    image.set_shape([None, None, channels])
    return image


def model_input(image: tf.Tensor, scale: int | None, size: int | None) -> tf.Tensor:
    """uint8 [H, W, C] -> float32 [h, w, C] in [0, 1] for the float signatures: the shorter side resized to
    `scale` (aspect kept), or squashed to `size` x `size`."""
    if scale is not None:
        image = resize_shorter_side(image, scale)
    else:
        image = resize(image, size, size)
    return tf.cast(image, tf.float32) / 255.0


def encoded_translation_fn(translate: Callable[[tf.Tensor], dict[str, tf.Tensor]], channels: int,
                           scale: int | None, size: int | None) -> Callable[[tf.Tensor], dict[str, tf.Tensor]]:
    """Wrap a float translation signature function: encoded images of any sizes in, PNG bytes out."""

    def one(image_bytes: tf.Tensor) -> tf.Tensor:
        image = decode(image_bytes, channels)
        y = translate(model_input(image, scale, size)[None])["images"][0]
        height, width = tf.shape(image)[0], tf.shape(image)[1]
        return tf.io.encode_png(resize(y * 255.0, height, width))

    def serve(image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        # One image at a time: a batch may mix sizes, and each is translated at its own aspect ratio.
        encoded = tf.map_fn(one, image_bytes, fn_output_signature=tf.TensorSpec([], tf.string))
        return {BYTES_KEY: encoded}

    return serve


def encoded_classify_fn(classify: Callable[[tf.Tensor], dict[str, tf.Tensor]], channels: int,
                        size: int) -> Callable[[tf.Tensor], dict[str, tf.Tensor]]:
    """Wrap a float classify signature function: encoded images in, its outputs out."""

    def serve(image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        images = tf.map_fn(lambda b: model_input(decode(b, channels), None, size), image_bytes,
                           fn_output_signature=tf.TensorSpec([size, size, channels], tf.float32))
        return classify(images)

    return serve


# --- warm-up requests: PredictionLog protos in a TFRecord file -------------------------------------------------
# tensorflow_serving/apis: PredictionLog.predict_log = 6; PredictLog.request = 1; PredictRequest.model_spec = 1,
# .inputs = 2 (map<string, TensorProto>: entries with key = 1, value = 2); ModelSpec.signature_name = 3.


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def prediction_log(signature_name: str, inputs: dict[str, np.ndarray]) -> bytes:
    """A serialized tensorflow.serving.PredictionLog holding a PredictRequest for the signature."""
    spec = _field(3, signature_name.encode())
    entries = b"".join(_field(2, _field(1, key.encode()) + _field(2, tf.make_tensor_proto(value).SerializeToString()))
                       for key, value in sorted(inputs.items()))
    request = _field(1, spec) + entries
    return _field(6, _field(1, request))


def warmup_inputs(spec: dict[str, Any], size: int) -> dict[str, np.ndarray]:
    """One grey image of the signature's input (`size` x `size` where the signature's H, W are free)."""
    (name, tensor), = spec["inputs"].items()
    if tensor["dtype"] == "string":
        channels = tensor["channels"]
        png = tf.io.encode_png(tf.fill([size, size, channels], tf.constant(WARMUP_GREY, tf.uint8))).numpy()
        return {name: np.array([png], dtype=object)}
    _, height, width, channels = tensor["shape"]
    return {name: np.full([1, height or size, width or size, channels], WARMUP_GREY / 255, np.float32)}


def write_warmup_requests(export_dir: Path, specs: dict[str, dict[str, Any]], size: int) -> Path:
    """`assets.extra/tf_serving_warmup_requests`: one request per signature (TF Serving replays them on load)."""
    path = Path(export_dir) / "assets.extra" / WARMUP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for name, spec in specs.items():
            writer.write(prediction_log(name, warmup_inputs(spec, size)))
    return path
