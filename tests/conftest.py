"""Test set-up: two logical CPU devices (for MirroredStrategy tests), tiny configs and generated data."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Hermetic: no download attempts (Inception-V3 weights, TFDS), and domain judges cached in a temporary folder
# instead of ~/.cache (subprocesses inherit both).
os.environ.setdefault("UNIT_OFFLINE", "1")
os.environ.setdefault("UNIT_CACHE_DIR", tempfile.mkdtemp(prefix="unit_tf_cache_"))
# One simulated machine kind everywhere (subprocesses too): no native bfloat16/float16, so precision "auto" is
# float32 and the results are the same on an AVX-512-BF16/AMX machine or a GPU as on an AVX2 one.
os.environ["UNIT_NATIVE_BF16"] = "0"
os.environ["UNIT_NATIVE_FP16"] = "0"
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

# TensorFlow's own oneDNN choice for this CPU, in subprocesses too. Importing unit_tf turns oneDNN on where
# TensorFlow leaves it off (CPUs without AVX-VNNI: tests/test_hardware.py checks that), and there oneDNN has no
# bfloat16 kernels, which some tests train with.
_onednn = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
from unit_tf import hardware  # noqa: E402

os.environ["TF_ENABLE_ONEDNN_OPTS"] = _onednn or ("1" if hardware.tf_onednn_default() else "0")
os.environ.pop(hardware.ONEDNN_AUTO_ENV, None)

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

# Must happen before TensorFlow initializes its devices (i.e. before the first op runs).
_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(_cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from helpers import tiny_config, write_digit_dirs  # noqa: E402


@pytest.fixture
def config():
    """A tiny digit config (widths 4-8, batch 8) that trains a step in well under a second."""
    return tiny_config()


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """A data folder in our npz layout (<domain>/{train,test}.npz) with generated MNIST-, USPS-, SVHN-like sets."""
    return write_digit_dirs(tmp_path_factory.mktemp("data"))
