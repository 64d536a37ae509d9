"""The code base is ruff clean (part of the test command, so CI and developers run the same check)."""

from __future__ import annotations

import subprocess
import sys

from helpers import ROOT


def test_ruff_clean():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
