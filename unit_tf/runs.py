"""Run directories: their layout, the rule for reusing one (resume only the same run), and restoring the
model a run trained (for evaluation, translation and export)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from unit_tf.checkpoints import RunCheckpoint
from unit_tf.config import UNITConfig, defining_differences
from unit_tf.errors import UserError
from unit_tf.files import write_text
from unit_tf.model import UNIT, build_model


@dataclass(frozen=True)
class RunDir:
    """R/config.json, R/checkpoints/, R/logs/ (TensorBoard), R/samples/, R/metrics.csv, R/eval/."""

    root: Path

    @property
    def config_path(self) -> Path:
        return self.root / "config.json"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def samples(self) -> Path:
        return self.root / "samples"

    @property
    def metrics_csv(self) -> Path:
        return self.root / "metrics.csv"

    @property
    def accuracy_csv(self) -> Path:
        """Classifier accuracy on both test splits during training (domain-adaptation runs)."""
        return self.root / "accuracy.csv"

    @property
    def eval(self) -> Path:
        return self.root / "eval"

    @property
    def source_only_json(self) -> Path:
        """The source-only classifier (warm-up) of a DA run: steps, seconds, accuracies."""
        return self.eval / "source_only.json"

    def read_config(self) -> UNITConfig:
        if not self.config_path.is_file():
            raise UserError(f"{self.root} is not a run directory (no config.json); pass the --output-dir "
                            "of a train.py run")
        try:
            values = json.loads(self.config_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise UserError(f"{self.config_path} is not valid JSON; restore it or start a new run") from None
        return UNITConfig.from_dict(values)

    def write_config(self, config: UNITConfig) -> None:
        """Write config.json atomically (temporary file, then rename)."""
        write_text(self.config_path, config.to_json() + "\n")

    def clear(self) -> None:
        """Delete this run's files (only what train.py writes; anything else in the folder stays)."""
        for folder in (self.checkpoints, self.logs, self.samples, self.eval):
            shutil.rmtree(folder, ignore_errors=True)
        for path in (self.metrics_csv, self.accuracy_csv, self.config_path):
            path.unlink(missing_ok=True)

    def prepare(self, config: UNITConfig, overwrite: bool = False) -> None:
        """Create the run directory (after `check` accepted it): with `overwrite` the old run's files are
        deleted first; the config is (re)written, since the step count and cadences may have changed."""
        if overwrite and self.config_path.is_file():
            self.clear()
        for folder in (self.root, self.checkpoints, self.logs, self.samples):
            folder.mkdir(parents=True, exist_ok=True)
        self.write_config(config)

    def check(self, config: UNITConfig, overwrite: bool = False) -> None:
        """Refuse a directory that holds another run (settings that define the run differ) unless `overwrite`,
        or that holds other files. Reads only: in multi-worker training every worker checks before the chief
        writes, so all of them stop with the same error instead of waiting for a chief that failed."""
        if self.root.exists() and not self.root.is_dir():
            raise UserError(f"--output-dir {self.root} is a file; choose a directory")
        if overwrite and self.config_path.is_file():
            return
        if self.config_path.is_file():
            old = self.read_config()
            diffs = defining_differences(old, config)
            if diffs:
                shown = ", ".join(f"{k}" for k in diffs[:5]) + (" ..." if len(diffs) > 5 else "")
                raise UserError(
                    f"{self.root} holds a different run (settings differ: {shown}); use --resume to continue "
                    "it with its saved settings, --overwrite to replace it, or another --output-dir"
                )
        elif self.root.is_dir() and any(self.root.iterdir()):
            raise UserError(f"--output-dir {self.root} is not empty and is not a run directory; choose "
                            "an empty or new directory")


def load_trained(run_dir: str | Path, step: int | None = None) -> tuple[UNIT, UNITConfig, int]:
    """The model of a run directory with the weights of its checkpoint at `step` (default: the latest), its
    config and that step."""
    run = RunDir(Path(run_dir))
    config = run.read_config()
    model = build_model(config)
    checkpoint = RunCheckpoint(model, run.checkpoints)
    if step is not None:
        return model, config, checkpoint.restore_step(step, weights_only=True)
    step = checkpoint.restore_latest(weights_only=True)
    if step is None:
        raise UserError(f"{run.root} has no checkpoint yet; train it first (python train.py --output-dir "
                        f"{run.root} ...)")
    return model, config, step
