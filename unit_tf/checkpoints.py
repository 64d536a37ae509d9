"""Checkpoints of a run: model weights, both optimizers (and so the step), the latent-noise RNG state."""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

from unit_tf.errors import UserError


class RunCheckpoint:
    """`tf.train.CheckpointManager` over `R/checkpoints/`, keeping the last `keep` checkpoints (0: all).

    The manager writes the checkpoint files first and the `checkpoint` index last, so a crash mid-write
    leaves the previous checkpoint as the latest one.
    """

    def __init__(self, model: tf.keras.Model, directory: str | Path, keep: int = 3,
                 restore_from: str | Path | None = None) -> None:
        """`restore_from`: read the latest checkpoint there instead of in `directory` (a multi-worker
        non-chief writes to a private folder but resumes from the chief's checkpoints)."""
        self.model = model
        self.restore_from = str(restore_from or directory)
        # Every model variable by its Keras path — weights, batch-norm moving statistics and the latent-noise
        # SeedGenerator state. (Keras 3 keeps layer lists in its own tracker, which TF's object-graph
        # checkpoint does not follow, so the variables are listed explicitly.)
        variables = {v.path: v for v in model.variables}
        self.checkpoint = tf.train.Checkpoint(
            variables=variables, d_optimizer=model.d_optimizer, g_optimizer=model.g_optimizer
        )
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, str(directory), max_to_keep=keep or None, checkpoint_name="ckpt"
        )

    @property
    def step(self) -> int:
        return self.model.step

    @property
    def latest(self) -> str | None:
        return self.manager.latest_checkpoint

    def steps(self) -> list[int]:
        """The steps of the checkpoints on disk (complete ones: index file written), oldest first."""
        found = []
        for index in Path(self.restore_from).glob("ckpt-*.index"):
            number = index.name[len("ckpt-"):-len(".index")]
            if number.isdigit():
                found.append(int(number))
        return sorted(found)

    def restore_latest(self, weights_only: bool = False) -> int | None:
        """Restore the newest checkpoint; returns its step, or None if there is none."""
        path = tf.train.latest_checkpoint(self.restore_from)
        if path is None:
            return None
        return self._restore(path, weights_only)

    def restore_step(self, step: int, weights_only: bool = False) -> int:
        """Restore `ckpt-<step>`; a UserError listing the steps there are if it does not exist."""
        if step not in self.steps():
            there = ", ".join(str(s) for s in self.steps()) or "none"
            raise UserError(f"{self.restore_from} has no checkpoint at step {step} (checkpoints: {there}); "
                            "pass one of those steps, or omit --step for the latest")
        return self._restore(str(Path(self.restore_from) / f"ckpt-{step}"), weights_only)

    def _restore(self, path: str, weights_only: bool) -> int:
        try:
            status = self.checkpoint.restore(path)
            if weights_only:
                status.expect_partial()
            else:
                status.assert_existing_objects_matched()
        except (tf.errors.OpError, AssertionError, ValueError) as err:
            raise UserError(
                f"checkpoint {path} does not match this model ({type(err).__name__}); "
                "use a new --output-dir or the settings the run was started with"
            ) from None
        return self.step

    def save(self) -> str:
        """Write `ckpt-<step>`; on a full disk or unwritable folder, a UserError (the previous one stays)."""
        step = self.step
        previous = self.manager.latest_checkpoint
        if previous and previous.endswith(f"-{step}"):
            return previous  # already saved at this step
        try:
            return self.manager.save(checkpoint_number=step)
        except (OSError, tf.errors.OpError) as err:
            reason = getattr(err, "strerror", None) or getattr(err, "message", None) or str(err)
            raise UserError(
                f"could not write checkpoint {step} to {self.manager.directory} ({reason.splitlines()[0]}); "
                f"free disk space or choose a writable --output-dir. The previous checkpoint "
                f"({previous or 'none'}) is intact"
            ) from None
