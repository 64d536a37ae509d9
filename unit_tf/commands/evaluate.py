"""`unit-tf evaluate` / `python evaluate.py`: evaluate a run (`--run-dir R`) or an export (`--saved-model DIR`);
prints one JSON object as the last line of stdout."""

from __future__ import annotations

import json

from unit_tf.cli import ArgumentParser, non_negative_int, quiet_tensorflow
from unit_tf.errors import UserError

quiet_tensorflow()


def main(argv: list[str] | None = None, prog: str = "evaluate.py") -> int:
    p = ArgumentParser(prog=prog, description="Evaluate a UNIT run's latest (or --step) checkpoint.")
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument("--run-dir", help="the --output-dir of a train.py run")
    model.add_argument("--saved-model", metavar="DIR",
                       help="an export (saved_models/NAME/1, or NAME for its highest version): measured through its "
                            "signatures on the data set of the config it carries")
    p.add_argument("--data-dir", help="data folder (default: the run's, then $UNIT_DATA_DIR, then TFDS)")
    p.add_argument("--dataset", metavar="NAME",
                   help="--saved-model: the data set to measure on, where it lives on this machine (default: the one "
                        "the export was trained on), e.g. folder:../shared/data/cat2dog")
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
    if args.dataset and not args.saved_model:
        raise UserError("--dataset goes with --saved-model (a run measures the data set it was trained on)")
    if args.saved_model:
        if args.step is not None:
            raise UserError("--step needs --run-dir: an export holds one set of weights; drop --step")
        from unit_tf.evaluation import evaluate_export

        result = evaluate_export(args.saved_model, args.data_dir, args.split, args.feature_weights, args.judge_dir,
                                 dataset=args.dataset)
    else:
        from unit_tf.evaluation import evaluate

        result = evaluate(args.run_dir, args.data_dir, args.split, args.step, args.feature_weights,
                          args.judge_dir)
    print(json.dumps(result, sort_keys=True))
    return 0
