"""Golden record of a few deterministic training steps (the refactor guard of issue 17).

    python tests/golden_steps.py            # the record as JSON, the last line of stdout
    python tests/golden_steps.py --write    # rewrite tests/golden/steps.json (only for an intended change)

Each case trains a real preset for a few steps through `training.train` (data pipeline, source-only
warm-up, the alternating step, callbacks) from a fixed seed in float32 with deterministic ops, one thread,
oneDNN capped at AVX2 and the fast paths' AVX2 forms, and records every loss value of every step and a
checksum of every variable. The cap narrows the gap between CPU kinds but does not close it (the kernels still
round differently), so the record names the CPU it was written on: tests/test_golden.py compares a fresh
record exactly on that CPU model and the losses to a tolerance on any other.
"""

from __future__ import annotations

import os

os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")  # before TensorFlow loads oneDNN
os.environ.setdefault("UNIT_AVX512", "0")  # and the fast paths' forms of a CPU without AVX-512 (unit_tf.fast)
# TensorFlow's oneDNN kernels, which unit_tf turns on on every x86 CPU (TensorFlow itself only on some).
os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import hashlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import keras  # noqa: E402
from helpers import StepLogs, write_digit_dirs  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from unit_tf import hardware  # noqa: E402
from unit_tf.config import OFFICIAL_DA_LOSSES, OFFICIAL_GENERATOR, resolve_config  # noqa: E402

GOLDEN = Path(__file__).resolve().parent / "golden" / "steps.json"
COMMON = {"train.steps": 2, "train.seed": 7, "train.deterministic": True, "train.precision": "float32",
          "train.log_every": 1,
          "train.checkpoint_every": 1000, "train.sample_every": 1000}
# name -> (dataset, preset, overrides): the digit DA recipe, the official DA losses (reconstructions as fakes,
# SSE, summed KL), the paper's translation losses on the digit networks (cycle stream), the residual `small`
# preset with the official generators (OFFICIAL_GENERATOR: recorded before the fidelity switches existed, so
# these cases also prove the official values rebuild the official networks exactly), its multi-scale,
# no-reconstruction-stream LSGAN ablation, and `small` as it is (its fidelity defaults and one down-sampling;
# re-recorded when `small` changed to one down-sampling, commit abc36a7, to three discriminator scales,
# commit 967e3f5, to norm-free encoders, commit c6d36cb, to norm-free decoders, commit fc33e7f, and to half the
# paper's latent noise, model.latent_noise_std 0.5).
CASES = {
    "digits_da_small": ("svhn_mnist", "digits_da_small",
                        {"data.batch_size": 16, "train.classifier_warmup_steps": 2}),
    "digits_da_small_official_losses": ("mnist_usps", "digits_da_small",
                                        {**OFFICIAL_DA_LOSSES, "data.batch_size": 16,
                                         "train.classifier_warmup_steps": 2}),
    "digits_small": ("usps_mnist", "digits_small", {"data.batch_size": 16}),
    "small": ("folders", "small", {**OFFICIAL_GENERATOR, "data.batch_size": 2}),
    "small_multiscale_ablation": ("folders", "small", {**OFFICIAL_GENERATOR, "data.batch_size": 2,
                                                       "model.dis_scales": 2, "loss.recon_stream": False,
                                                       "loss.gan_type": "lsgan"}),
    "small_fidelity": ("folders", "small", {"data.batch_size": 2}),
}


def write_image_folders(root: Path, n: int = 10) -> tuple[Path, Path]:
    """Two folders of generated 40x40 photos-like PNGs: discs on gradients (A), squares on flat colour (B)."""
    rng = np.random.default_rng(0)
    folders = (root / "A", root / "B")
    for domain, folder in enumerate(folders):
        folder.mkdir(parents=True)
        for i in range(n):
            base = rng.integers(0, 256, 3)
            pixels = np.tile(base, (40, 40, 1)).astype(np.float64)
            if domain == 0:
                pixels += np.linspace(-60, 60, 40)[:, None, None]
            image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
            draw = ImageDraw.Draw(image)
            x, y = (int(v) for v in rng.integers(4, 24, 2))
            shape = draw.ellipse if domain == 0 else draw.rectangle
            shape([x, y, x + 12, y + 12], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
            image.save(folder / f"{i:02d}.png")
    return folders


def weight_record(model: keras.Model) -> dict:
    digest = hashlib.sha256()
    sums = {}
    for v in sorted(model.variables, key=lambda v: v.path):
        values = np.asarray(v.numpy())
        digest.update(v.path.encode() + values.tobytes())
        sums[v.path] = float(np.sum(values.astype(np.float64)))
    return {"sha256": digest.hexdigest(), "sums": sums}


def run_case(name: str, work: Path, digits: Path, folders: tuple[Path, Path]) -> dict:
    from unit_tf import training

    dataset, preset, overrides = CASES[name]
    values = {**COMMON, **overrides}
    if dataset == "folders":
        values.update({"data.domain_a": str(folders[0]), "data.domain_b": str(folders[1])})
    else:
        values["data.data_dir"] = str(digits)
    config = resolve_config(dataset, preset, overrides=values)
    recorder = StepLogs()  # log_every = 1: the logger resets the trackers after each step
    run_dir = work / name
    model = training.train(config, run_dir, verbose=0, callbacks=[recorder]).model
    header = (run_dir / "metrics.csv").read_text().splitlines()[0]
    # The CPU it ran on (name, family, model: one name covers several generations): float32 sums are reproduced
    # bit for bit on one CPU model, not across models (oneDNN and Eigen block their loops by the CPU's caches),
    # so tests/test_golden.py compares exactly only there.
    record = {"steps": recorder.steps, "weights": weight_record(model), "metrics_csv_header": header,
              "machine": hardware.cpu_model_id()}
    warm_up = run_dir / "eval" / "source_only.json"
    if warm_up.is_file():
        values = json.loads(warm_up.read_text())
        record["source_only"] = {k: v for k, v in values.items() if k != "seconds"}
    return record


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        digits = write_digit_dirs(work / "digits")
        folders = write_image_folders(work / "images")
        names = sys.argv[2:] if len(sys.argv) > 2 and sys.argv[1] == "--cases" else list(CASES)
        record = {name: run_case(name, work, digits, folders) for name in names}
    if "--write" in sys.argv:
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    print(json.dumps(record, sort_keys=True))


if __name__ == "__main__":
    main()
