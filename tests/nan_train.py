"""train.py with a non-finite loss at one step: `python tests/nan_train.py --nan-step N <train.py flags>`.

A test double, not a feature: it wraps the GAN loss functions so that, at global step N, the discriminator's
and the generator's GAN terms are NaN (once: a skipped step is not retried with NaN). The divergence guard,
the skipped update and the kept checkpoint are then exercised through the real command line.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tensorflow as tf  # noqa: E402

import train  # noqa: E402
from unit_tf import losses  # noqa: E402
from unit_tf.errors import run_cli  # noqa: E402
from unit_tf.model import UNIT  # noqa: E402


def inject_nan(step: int) -> None:
    """Make the GAN losses NaN at global `step`: the step sets a flag the wrapped loss functions read."""
    hit: list[tf.Tensor] = []
    train_step = UNIT.train_step

    def flagged_step(self: UNIT, data: dict) -> dict:
        flag = tf.equal(self.g_optimizer.iterations + 1, step)
        scale = getattr(self.g_optimizer, "dynamic_scale", None)
        if scale is not None:  # once: a skipped step halves a dynamic loss scale and is retried
            flag = flag & tf.equal(scale, 1.0)
        hit[:] = [flag]
        return train_step(self, data)

    def poisoned(loss_fn):  # noqa: ANN001, ANN202
        def wrapped(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            value = loss_fn(*args, **kwargs)
            return value * tf.where(hit[0], float("nan"), 1.0) if hit else value

        return wrapped

    UNIT.train_step = flagged_step
    losses.discriminator_gan_loss = poisoned(losses.discriminator_gan_loss)
    losses.generator_gan_loss = poisoned(losses.generator_gan_loss)


if __name__ == "__main__":
    args = sys.argv[1:]
    index = args.index("--nan-step")
    inject_nan(int(args[index + 1]))
    del args[index:index + 2]
    run_cli(lambda: train.main(args), "train.py")
