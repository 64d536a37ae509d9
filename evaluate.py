#!/usr/bin/env python
"""Evaluate a run: `python evaluate.py --run-dir R` prints one JSON object as the last line of stdout."""

from __future__ import annotations

import json

from unit_tf.cli import ArgumentParser, non_negative_int, quiet_tensorflow
from unit_tf.errors import run_cli

quiet_tensorflow()


def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="evaluate.py", description="Evaluate a UNIT run's latest (or --step) checkpoint.")
    p.add_argument("--run-dir", required=True, help="the --output-dir of a train.py run")
    p.add_argument("--data-dir", help="data folder (default: the run's, then $UNIT_DATA_DIR, then TFDS)")
    p.add_argument("--split", default="test", choices=["train", "test"])
    p.add_argument("--step", type=non_negative_int,
                   help="use the checkpoint of this step (default: the latest; R/checkpoints/ckpt-<step>)")
    p.add_argument("--feature-weights", metavar="PATH",
                   help="translation runs: ImageNet Inception-V3 weights for KID (keras' "
                        "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5) when they cannot be downloaded")
    p.add_argument("--judge-dir", metavar="DIR",
                   help="translation runs: cache of domain judges (default $UNIT_CACHE_DIR/judges or "
                        "~/.cache/unit_tf/judges)")
    args = p.parse_args(argv)
    from unit_tf.evaluation import evaluate

    result = evaluate(args.run_dir, args.data_dir, args.split, args.step, args.feature_weights, args.judge_dir)
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    run_cli(main, "evaluate.py")
