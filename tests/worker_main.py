"""One training process for tests/test_multi_worker.py: train.py's training, then the weights to an .npz.

    python tests/worker_main.py RUN_DIR WEIGHTS.npz [--initial INITIAL.npz] KEY=VALUE ...

TF_CONFIG in the environment makes it one worker of a cluster. --initial also saves the weights as built.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unit_tf import training  # noqa: E402
from unit_tf.config import parse_set_flags, resolve_config  # noqa: E402
from unit_tf.export import export_model  # noqa: E402


def weights(model) -> dict[str, np.ndarray]:  # noqa: ANN001
    return {v.path: v.numpy() for v in model.trainable_variables}


def record_initial_weights(path: str) -> None:
    build = training.build_model

    def build_and_record(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        model = build(*args, **kwargs)
        np.savez(path, **weights(model))
        return model

    training.build_model = build_and_record


if __name__ == "__main__":
    run_dir, weights_path, *overrides = sys.argv[1:]
    if overrides[:1] == ["--initial"]:
        record_initial_weights(overrides[1])
        overrides = overrides[2:]
    preset = overrides.pop(0).removeprefix("--preset=") if overrides[:1][0].startswith("--preset=") else "digits_small"
    config = resolve_config("mnist_usps", preset, overrides=parse_set_flags(overrides))
    run = training.train(config, run_dir, verbose=0)
    if run.chief:  # what train.py does after training
        export_model(run.model, Path(run_dir).parent / "export")
    np.savez(weights_path, **weights(run.model))
