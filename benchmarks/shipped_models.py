"""Re-measure every shipped model's card from the shipped files: `python evaluate.py <card's evaluate flags>`
for each saved_models/*/card.json, compared with the card's metrics.

    python benchmarks/shipped_models.py [--models cat2dog_64,...] [--tolerance 1e-4]

Prints one JSON line per model (its re-measured metrics, the card's, the largest difference, and `matches`)
and exits 1 if any model does not match within --tolerance. Needs the data each card names (e.g.
../shared/data/cat2dog).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from unit_tf.cli import ArgumentParser  # noqa: E402
from unit_tf.errors import UserError, run_cli  # noqa: E402


def remeasure(card: dict[str, Any], tolerance: float) -> dict[str, Any]:
    """Run the card's evaluate command from the repository root and compare its metrics with the card's."""
    result = subprocess.run([sys.executable, "evaluate.py", *card["evaluate"]], cwd=ROOT, capture_output=True,
                            text=True)
    if result.returncode != 0:
        tail = result.stderr.strip().splitlines()[-1:] or ["no output"]
        return {"model": card["name"], "matches": False, "error": tail[0]}
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    diffs = {key: abs(measured[key] - value) if key in measured else None for key, value in card["metrics"].items()}
    matches = all(d is not None and d <= tolerance for d in diffs.values())
    largest = max((d for d in diffs.values() if d is not None), default=None)
    return {"model": card["name"], "matches": matches, "max_abs_diff": largest,
            "missing": [k for k, d in diffs.items() if d is None],
            "measured": {k: measured.get(k) for k in card["metrics"]}, "card": card["metrics"]}


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="benchmarks/shipped_models.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", help="comma list of saved_models/ names (default: every card)")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="largest accepted |measured - card|")
    args = parser.parse_args(argv)
    cards = {p.parent.name: p for p in sorted((ROOT / "saved_models").glob("*/card.json"))}
    names = [n.strip() for n in args.models.split(",")] if args.models else list(cards)
    unknown = [n for n in names if n not in cards]
    if unknown:
        raise UserError(f"--models {','.join(unknown)}: no such shipped model; choose among {', '.join(cards)}")
    ok = True
    for name in names:
        report = remeasure(json.loads(cards[name].read_text()), args.tolerance)
        ok &= report["matches"]
        print(json.dumps(report), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    run_cli(main, "benchmarks/shipped_models.py")
