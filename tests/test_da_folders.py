"""Domain adaptation on your own files (da:SOURCE,TARGET): class folders and npz folders end to end, the class
names in the config, the reports and the export, and one error line for each way the folders can be wrong."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import tensorflow as tf
from helpers import load_benchmark, run_script, synthetic_digits, tiny_flags, write_class_folders

import train as train_cli
from unit_tf import adaptation
from unit_tf.config import UNITConfig, class_names, resolve_config
from unit_tf.data.sources import load_run_data
from unit_tf.errors import UserError

CLASSES = ["bar", "circle", "cross"]  # sorted: the classifier's output order


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A gray 3-class source (20 px PNGs), an unlabelled RGB target in nested folders (24 px) and a labelled
    target test split with two of the source's classes."""
    root = tmp_path_factory.mktemp("da")
    write_class_folders(root / "source", n=8, size=20, channels=1, seed=0)
    write_class_folders(root / "target", n=8, size=24, channels=3, seed=1, labelled=False)
    write_class_folders(root / "target_test", names=("circle", "cross"), n=4, size=24, channels=3, seed=2)
    return root


@pytest.fixture(scope="module")
def trained(folders):
    """Two steps through train.py (after a 2-step source-only warm-up), with the export."""
    run = folders / "run"
    result = run_script("train.py", "--dataset", f"da:{folders / 'source'},{folders / 'target'}", "--target-test",
                        str(folders / "target_test"), "--output-dir", str(run), "--export-dir",
                        str(folders / "saved"), "--steps", "2", "--batch-size", "8", *tiny_flags())
    assert result.returncode == 0, result.stderr[-3000:]
    return run


def _config(*args: str) -> UNITConfig:
    return train_cli.make_config(train_cli.parse_args([*args, "--batch-size", "8", *tiny_flags()]))


def test_class_folders_train_through_train_py(trained):
    config = UNITConfig.from_dict(json.loads((trained / "config.json").read_text()))
    assert config.data.dataset == "da" and config.preset == "digits_da"
    assert config.data.class_names == CLASSES and config.model.num_classes == 3
    assert (config.model.channels_a, config.model.channels_b) == (1, 3)  # each domain keeps its own
    rows = adaptation.read_accuracy_csv(trained / "accuracy.csv")
    assert rows[-1]["step"] == 2 and 0 <= rows[-1]["target_accuracy"] <= 1
    assert "target_accuracy" in adaptation.read_json(trained / "eval" / "source_only.json")


def test_the_export_answers_with_class_names(trained, folders):
    version = next((folders / "saved" / "run").iterdir())
    specs = json.loads((version / "assets.extra" / "signatures.json").read_text())
    assert specs["classify_a"]["class_names"] == CLASSES
    assert specs["classify_b"]["outputs"]["probabilities"]["shape"] == [None, 3]
    loaded = tf.saved_model.load(str(version))
    out = loaded.signatures["classify_a"](images=tf.random.stateless_uniform([6, 32, 32, 1], seed=[0, 1]))
    assert out["probabilities"].shape == (6, 3)
    assert [n.decode() for n in out["names"].numpy()] == [CLASSES[k] for k in out["classes"].numpy()]


def test_evaluation_reports_accuracy_per_class_by_name(trained):
    from unit_tf.evaluation import evaluate

    report = evaluate(trained)
    assert report["class_names"] == CLASSES and report["num_images_b"] == 8  # the target test split
    assert set(report["source_accuracy_per_class"]) == set(CLASSES)
    assert set(report["target_accuracy_per_class"]) == {"circle", "cross"}
    assert 0 <= report["target_accuracy"] <= 1 and (trained / "eval").glob("confusion_target_test_step_2.png")


def _npz_source(folder, n: int = 24):
    """An npz folder of 3 classes (labels 0, 1, 2), 28 px gray, train.npz and test.npz."""
    folder.mkdir(parents=True)
    for split, seed in (("train", 0), ("test", 1)):
        x, _ = synthetic_digits(n, 28, 1, seed=seed)
        np.savez_compressed(folder / f"{split}.npz", x=x, y=np.arange(n) % 3)
    return folder


def test_npz_source_and_a_target_without_labels(folders, tmp_path):
    """An npz source (classes 0..2) and an image-folder target without labelled images: training reports the
    source accuracy only."""
    from unit_tf.evaluation import evaluate
    from unit_tf.training import train

    source = _npz_source(tmp_path / "digits")
    config = _config("--source", str(source), "--target", str(folders / "target"), "--steps", "2")
    assert config.data.class_names == ["0", "1", "2"] and config.model.num_classes == 3
    train(config, tmp_path / "run", verbose=0)
    rows = adaptation.read_accuracy_csv(tmp_path / "run" / "accuracy.csv")
    assert rows and all(set(row) == {"step", "source_accuracy"} for row in rows)
    assert "target_accuracy" not in adaptation.read_json(tmp_path / "run" / "eval" / "source_only.json")
    report = evaluate(tmp_path / "run")
    assert "target_accuracy" not in report and set(report["source_accuracy_per_class"]) == {"0", "1", "2"}
    assert report["num_images_a"] == 24  # the source's test.npz


def test_channels_flag_converts_both_domains(folders):
    config = _config("--source", str(folders / "source"), "--target", str(folders / "target"), "--channels", "3")
    assert (config.model.channels_a, config.model.channels_b) == (3, 3)
    data = load_run_data(config, 4)
    assert data.train_a.images.shape == (24, 32, 32, 3) and data.train_b.images.shape == (24, 32, 32, 3)
    gray = data.train_a.images
    assert np.array_equal(gray[..., 0], gray[..., 1]) and np.array_equal(gray[..., 0], gray[..., 2])
    assert data.test_b.labels is None  # no labelled target images: evaluation has none to score
    np.testing.assert_array_equal(np.bincount(data.train_a.labels), [8, 8, 8])


def test_npz_target_brings_its_labelled_test_split(folders, tmp_path):
    target = _npz_source(tmp_path / "target")
    config = _config("--dataset", f"da:{folders / 'source'},{target}")
    assert (config.model.channels_a, config.model.channels_b) == (1, 1)
    data = load_run_data(config, 4)
    assert data.test_b.images.shape == (24, 32, 32, 1)
    np.testing.assert_array_equal(data.test_b.labels, np.arange(24) % 3)


def test_digit_pairs_have_ten_digit_classes():
    config = resolve_config("mnist_usps", "digits_da_small")
    assert config.model.num_classes == 10 and class_names(config) == [str(k) for k in range(10)]
    assert config.data.class_names == []


def _broken(folders, tmp_path, case: str) -> list[str]:
    """Flags of a data set that is wrong in one way."""
    source, target = folders / "source", folders / "target"
    if case in ("flat", "empty", "loose", "one_class"):
        source = tmp_path / "source"
        shutil.copytree(folders / "source", source)
        if case == "flat":
            for path in list(source.rglob("*.png")):
                path.rename(source / path.name)
            for sub in CLASSES:
                (source / sub).rmdir()
        elif case == "empty":
            (source / "dog").mkdir()
        elif case == "loose":
            shutil.copy(source / "bar" / "bar_000.png", source / "stray.png")
        else:
            for sub in CLASSES[1:]:
                shutil.rmtree(source / sub)
    flags = ["--source", str(source), "--target", str(target)]
    if case == "unknown_test_class":
        test = tmp_path / "target_test"
        shutil.copytree(folders / "target_test", test)
        (test / "circle").rename(test / "dog")
        flags += ["--target-test", str(test)]
    if case == "test_labels":
        npz = _npz_source(tmp_path / "npz")
        np.savez(npz / "test.npz", x=np.zeros((4, 28, 28, 1), np.uint8), y=np.array([0, 1, 2, 5]))
        flags += ["--target-test", str(npz)]
    return flags


@pytest.mark.parametrize("case, message", [
    ("flat", "has no class subfolders"),
    ("empty", "class 'dog'"),
    ("loose", "outside its class subfolders"),
    ("one_class", "only one class"),
    ("unknown_test_class", "target-test classes dog"),
    ("test_labels", "has labels up to 5, but the source has 3 classes"),
])
def test_each_data_error_is_one_line(folders, tmp_path, case, message):
    with pytest.raises(UserError, match=message) as err:
        _config(*_broken(folders, tmp_path, case))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("flags, message", [
    (["--batch-size", "32"], "has 24 images, fewer than the batch size 32"),
    (["--dataset", "da:only_one_folder"], "two folders, one comma"),
    (["--source", "x"], "--source and --target go together"),
    (["--target-test", "x"], "only apply to domain adaptation"),
    (["--dataset", "da:nowhere,nowhere"], "nowhere (--source) does not exist"),
])
def test_flag_errors_are_one_line(folders, flags, message):
    if flags[0] == "--batch-size":
        flags = ["--source", str(folders / "source"), "--target", str(folders / "target"), *flags]
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        train_cli.make_config(train_cli.parse_args([*flags, *tiny_flags()]))


def test_a_bad_source_stops_train_py_with_one_line_and_code_2(folders, tmp_path):
    result = run_script("train.py", *_broken(folders, tmp_path, "empty"), "--output-dir", str(tmp_path / "run"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert [line for line in result.stderr.splitlines() if "error:" in line] == [
        f"train.py: error: class 'dog' ({tmp_path / 'source' / 'dog'}) of the source folder has no image files "
        "(.jpg, .jpeg, .png, .bmp, .webp, .gif); add its images or remove the folder"]
    assert not (tmp_path / "run").exists()


def test_the_benchmark_takes_the_same_folders_and_wants_target_labels(folders):
    module = load_benchmark("domain_adaptation")
    args = module.parse_args(["--source", str(folders / "source"), "--target", str(folders / "target"),
                              "--minutes", "1"])
    with pytest.raises(UserError, match="--target-test"):
        module.data_set(args)
    args.target_test = str(folders / "target_test")
    dataset, flags = module.data_set(args)
    assert dataset == "da" and flags["data.domain_a"] == str(folders / "source")


def test_the_source_only_benchmark_takes_the_same_folders(folders, tmp_path, monkeypatch, capsys):
    """benchmarks/source_only.py on your own folders: the source's labelled images train, the labelled target
    test split scores, and the JSON line names the folders; no pair and no folders is one error line."""
    from unit_tf import model

    target = _npz_source(tmp_path / "target")
    seen = []

    def train_source_only_for(unit, train_a, test_a, test_b, *args, **kwargs):
        seen.append((train_a, test_b))
        return [{"step": 1, "source_accuracy": 0.5, "target_accuracy": 0.25}]

    monkeypatch.setattr(adaptation, "train_source_only_for", train_source_only_for)
    monkeypatch.setattr(model, "build_model", lambda config: None)
    bench = load_benchmark("source_only")
    assert bench.main(["--source", str(folders / "source"), "--target", str(target), "--minutes", "1",
                       "--set", "data.batch_size=8"]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["pair"] == f"da:{folders / 'source'},{target}" and line["source_only_accuracy"] == 0.25
    train_a, test_b = seen[0]
    np.testing.assert_array_equal(np.bincount(train_a.labels), [8, 8, 8])  # bar, circle, cross
    np.testing.assert_array_equal(test_b.labels, np.arange(24) % 3)  # the target's test.npz
    with pytest.raises(UserError, match="give a digit pair"):
        bench.main(["--minutes", "1"])


def test_the_benchmarks_take_dataset_as_train_py_spells_it(folders):
    """--dataset da:SOURCE,TARGET (train.py's flag) names the same data as --pair and --source/--target."""
    for name in ("domain_adaptation", "source_only"):
        module = load_benchmark(name)
        args = module.parse_args(["--dataset", f"da:{folders / 'source'},{folders / 'target'}", "--target-test",
                                  str(folders / "target_test"), "--minutes", "1"])
        dataset, flags = module.data_set(args)
        assert dataset == "da" and flags["data.domain_b"] == str(folders / "target")
        assert module.parse_args(["--dataset", "usps_mnist", "--minutes", "1"]).pair == "usps_mnist"
