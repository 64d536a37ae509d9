"""The official UNIT code (mingyuliutw/UNIT, branch version_02) on today's numpy and torch, unchanged on disk.

The 2017 code uses what current libraries removed: `np.int`, `np.reshape(a, newshape=...)`, `.cuda()` on every
tensor (this benchmark runs on the CPU), `.numpy()[0]` on 0-d losses (bfloat16 ones under autocast), and it
imports `cv2` for a module the DA trainer never uses. `load_official_trainers` patches those at run time in its
own process, then imports the checkout's `src/trainers` package: no official file is copied or modified (its
licence is CC BY-NC-SA 4.0).
"""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path
from typing import Any

from unit_tf.errors import UserError

GET_OFFICIAL = ("git clone https://github.com/mingyuliutw/UNIT && git -C UNIT checkout version_02, then pass "
                "--official-repo UNIT")
#: What the DA trainer needs from a version_02 checkout: file -> a line it must contain.
REQUIRED = {
    "src/trainers/__init__.py": "from .cocogan_trainer_da import",
    "src/trainers/cocogan_trainer_da.py": "class COCOGANDAContextTrainer",
    "src/trainers/cocogan_nets_da.py": "class CoVAE32x32",
    "src/trainers/common_net.py": "class LeakyReLUBNNSConv2d",
}
#: exps/unit/svhn2mnist.yaml's hyperparameters (the DA trainer reads only these).
SVHN2MNIST = {"trainer": "COCOGANDAContextTrainer", "gen": "CoVAE32x32", "dis": "CoDis32x32", "gen_ch": 96,
              "dis_ch": 64, "kl_normalized_direct_w": 0.0001, "ll_normalized_direct_w": 0.001, "feature_w": 0.0001,
              "cls_w": 10.0, "gan_w": 1.0, "batch_size": 64, "input_dim_a": 3, "input_dim_b": 1}


def check_official_repo(path: str | Path) -> Path:
    """The checkout's root if it holds version_02's DA trainer; else a UserError saying how to get one."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise UserError(f"--official-repo {path}: no such folder; {GET_OFFICIAL}")
    for name, needle in REQUIRED.items():
        file = root / name
        if not file.is_file() or needle not in file.read_text(errors="replace"):
            raise UserError(f"--official-repo {path} is not a mingyuliutw/UNIT checkout at version_02 ({name} "
                            f"{'lacks ' + repr(needle) if file.is_file() else 'is missing'}); {GET_OFFICIAL}")
    return root


def patch_numpy(np: Any) -> None:
    """`np.int` (removed in numpy 1.24) and `np.reshape(a, newshape=...)` (removed in numpy 2.4) on `np`."""
    if "int" not in vars(np):
        np.int = int
    reshape = np.reshape
    if getattr(reshape, "_accepts_newshape", False):
        return

    def reshape_accepting_newshape(a: Any, *args: Any, newshape: Any = None, **kwargs: Any) -> Any:
        return reshape(a, newshape, *args, **kwargs) if newshape is not None else reshape(a, *args, **kwargs)

    reshape_accepting_newshape._accepts_newshape = True
    np.reshape = reshape_accepting_newshape


def patch_tensor(tensor: type) -> None:
    """On the tensor class: `.cuda(...)` keeps the tensor where it is (the CPU), and `.numpy()` of a 0-d tensor
    is a 1-element array, so the 2017 code's `loss.data.cpu().numpy()[0]` reads the loss (a bfloat16 one, under
    autocast, as float32: numpy has no bfloat16)."""
    numpy = tensor.numpy
    if getattr(numpy, "_one_d", False):
        return

    def numpy_at_least_1d(self: Any, *args: Any, **kwargs: Any) -> Any:
        if str(getattr(self, "dtype", "")) == "torch.bfloat16":
            self = self.float()
        array = numpy(self, *args, **kwargs)
        return array.reshape(1) if array.ndim == 0 else array

    def cuda_stays(self: Any, *args: Any, **kwargs: Any) -> Any:
        return self

    numpy_at_least_1d._one_d = True
    tensor.numpy = numpy_at_least_1d
    tensor.cuda = cuda_stays


def stub_module(name: str, why: str) -> None:
    """Make `import name` succeed where the package is absent; any use of it raises ImportError (`why`)."""
    try:
        importlib.import_module(name)
        return
    except ImportError:
        pass
    module = types.ModuleType(name)

    def missing(attribute: str) -> Any:
        if attribute.startswith("__"):  # what hasattr / inspect probe on every module: plainly absent
            raise AttributeError(attribute)
        raise ImportError(f"{name}.{attribute}: {name} is not installed ({why})")

    module.__getattr__ = missing
    sys.modules[name] = module


def load_official_trainers(repo: Path) -> types.ModuleType:
    """The checkout's `trainers` package (src/trainers), imported after the shims above."""
    import numpy as np
    import torch

    patch_numpy(np)
    patch_tensor(torch.Tensor)
    stub_module("cv2", "the official common_net.py imports it for GaussianSmoother, which the DA trainer never uses")
    sys.path.insert(0, str(repo / "src"))
    return importlib.import_module("trainers")
