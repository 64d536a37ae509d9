"""The installable package: pyproject metadata agrees with the lock, `pip install .` gives a package that works
outside the repository (console command, .keras files), and the `unit-tf` command dispatches."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from helpers import ROOT, run_script, tiny_config
from packaging.requirements import Requirement

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the `test` extra brings tomli
    import tomli as tomllib

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version
    return pins


def test_every_dependency_range_admits_the_pinned_lock():
    lock = _lock()
    project = PYPROJECT["project"]
    requirements = [Requirement(r) for r in project["dependencies"]]
    requirements += [Requirement(r) for extra in ("serving", "test") for r in project["optional-dependencies"][extra]
                     if not r.startswith("unit-tf")]
    for req in requirements:
        if req.marker and not req.marker.evaluate():
            continue
        name = req.name.lower().replace("_", "-")
        assert name in lock, f"{name} is not pinned in requirements.txt"
        assert req.specifier.contains(lock[name]), f"{req} excludes the tested {name}=={lock[name]}"
    runtime = {Requirement(r).name.lower() for r in project["dependencies"]}
    assert not runtime & {"pytest", "pytest-xdist", "hypothesis", "ruff", "tensorflow-serving-api"}


def test_every_subpackage_is_found_by_the_build():
    folders = {p.parent for p in (ROOT / "unit_tf").rglob("*.py") if "__pycache__" not in p.parts}
    missing = [str(f.relative_to(ROOT)) for f in folders if not (f / "__init__.py").is_file()]
    assert not missing, f"folders without __init__.py are left out of the wheel: {missing}"


def test_unit_tf_command_dispatches_and_refuses_unknown_commands():
    result = run_script("-m", "unit_tf", "--help")
    assert result.returncode == 0 and all(c in result.stdout for c in ("train", "evaluate", "translate", "export"))
    result = run_script("-m", "unit_tf", "train", "--help")
    assert result.returncode == 0 and result.stdout.startswith("usage: unit-tf train")
    result = run_script("-m", "unit_tf", "frobnicate")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("unit-tf: error: unknown command 'frobnicate'")


def test_pip_install_works_outside_the_repository(tmp_path):
    """`pip install .` (into a target folder, no dependencies: the environment has them) gives the package and
    its console command; a .keras file saved by the repository's code loads from another folder."""
    from unit_tf.model import build_model

    source = tmp_path / "source"  # a copy: building writes build/ and *.egg-info next to pyproject.toml
    shutil.copytree(ROOT / "unit_tf", source / "unit_tf", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    target = tmp_path / "site"
    build = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--quiet",
                            "--target", str(target), str(source)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-2000:]
    (entry_points,) = target.glob("unit_tf-*.dist-info/entry_points.txt")
    assert "unit-tf = unit_tf.commands:run" in entry_points.read_text()
    model = build_model(tiny_config())
    keras_file = tmp_path / "m.keras"
    model.save(keras_file)
    script = ("import json, sys, keras, unit_tf, unit_tf.model; from unit_tf.commands import main; "
              "m = keras.models.load_model(sys.argv[1]); "
              "print(json.dumps({'package': unit_tf.__file__, 'class': type(m).__name__, 'help': main(['--help'])}))")
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(target)
    result = subprocess.run([sys.executable, "-c", script, str(keras_file)], cwd=work, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["package"].startswith(str(target)) and report["class"] == "UNIT" and report["help"] == 0
