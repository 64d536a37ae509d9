"""train.py and evaluate.py as a user runs them: run-directory contents, resume, JSON, clean errors."""

from __future__ import annotations

import csv
import json
import re

import pytest
from helpers import run_script, tiny_flags

from unit_tf.config import UNITConfig


def _assert_clean_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    error_lines = [line for line in result.stderr.splitlines() if re.match(r"^[\w. -]+: error: ", line)]
    assert len(error_lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in error_lines[0]


def _steps(csv_path):
    with open(csv_path, newline="") as f:
        return [int(row["step"]) for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, data_dir):
    """A 4-step mnist_usps run, then resumed to 6 steps with --strategy mirrored over 2 logical CPUs."""
    run = tmp_path_factory.mktemp("runs") / "R"
    base = ["train.py", "--dataset", "mnist_usps", "--data-dir", str(data_dir), "--output-dir", str(run),
            "--batch-size", "8", "--export-dir", str(run.parent / "saved_models"), *tiny_flags()]
    first = run_script(*base, "--steps", "4")
    assert first.returncode == 0, first.stderr
    second = run_script(*base, "--steps", "6", "--strategy", "mirrored", "--logical-cpus", "2")
    assert second.returncode == 0, second.stderr
    assert "Resuming" in second.stdout and "from step 4" in second.stdout
    return run


def test_run_directory_holds_every_artifact(trained_run):
    config = UNITConfig.from_dict(json.loads((trained_run / "config.json").read_text()))
    assert config.data.dataset == "mnist_usps" and config.train.steps == 6 and config.model.gen_ch == 4
    assert (trained_run / "checkpoints" / "checkpoint").is_file()
    assert any(p.name.startswith("ckpt-6") for p in (trained_run / "checkpoints").iterdir())
    for step in (2, 4, 6):
        assert (trained_run / "samples" / f"step_{step}.png").stat().st_size > 0
    assert _steps(trained_run / "metrics.csv") == [2, 4, 6]  # resumed run continued the same file
    with open(trained_run / "metrics.csv", newline="") as f:
        header = next(csv.reader(f))
    # The digit pairs default to the domain-adaptation preset: its terms, and no cycle term (weight 0).
    assert {"g_gan", "d_gan", "kl", "recon_l1", "classifier", "classifier_translated", "feature", "semantic",
            "d_loss", "g_loss"} <= set(header)
    assert not {"cycle_kl", "cycle_l1"} & set(header)
    assert config.preset == "digits_da" and (trained_run / "eval" / "source_only.json").is_file()
    accuracy_rows = (trained_run / "accuracy.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in accuracy_rows] == ["step", "4", "6"]


def test_each_training_invocation_exports_a_new_version(trained_run):
    versions = sorted(p.name for p in (trained_run.parent / "saved_models" / "R").iterdir())
    assert versions == ["1", "2"]
    assert (trained_run.parent / "saved_models" / "R" / "2" / "saved_model.pb").is_file()


def test_export_command(trained_run, tmp_path):
    result = run_script("-m", "unit_tf.export", "--run-dir", str(trained_run), "--output", str(tmp_path / "m"),
                        "--keras", str(tmp_path / "unit.keras"))
    assert result.returncode == 0, result.stderr
    assert "step 6" in result.stdout
    assert (tmp_path / "m" / "1" / "saved_model.pb").is_file() and (tmp_path / "unit.keras").is_file()
    again = run_script("-m", "unit_tf.export", "--run-dir", str(trained_run), "--output", str(tmp_path / "m"),
                       "--version", "1")
    _assert_clean_error(again, "never overwritten")


def test_tensorboard_log_has_scalars_and_images(trained_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(trained_run / "logs"), size_guidance={"tensors": 0})
    events.Reload()
    tags = events.Tags()["tensors"]
    assert "loss/recon_l1" in tags and "loss/g_gan" in tags and "samples" in tags
    assert sorted({e.step for e in events.Tensors("loss/recon_l1")}) == [2, 4, 6]


def test_evaluate_prints_json_last(trained_run, data_dir):
    result = run_script("evaluate.py", "--run-dir", str(trained_run), "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["step"] == 6
    for key in ("recon_l1_a", "recon_l1_b", "cycle_l1_a", "cycle_l1_b", "source_accuracy", "target_accuracy"):
        assert 0.0 <= report[key] <= 1.0
    assert (trained_run / "eval" / "translations_test_step_6.png").is_file()
    assert (trained_run / "eval" / "confusion_target_test_step_6.png").is_file()


def test_same_directory_with_other_settings_is_refused(trained_run, data_dir):
    config_before = (trained_run / "config.json").read_text()
    result = run_script("train.py", "--dataset", "mnist_usps", "--data-dir", str(data_dir), "--output-dir",
                        str(trained_run), "--batch-size", "8", *tiny_flags(), "--set", "loss.gan=1",
                        "--steps", "8")
    _assert_clean_error(result, "loss.gan", "--output-dir")
    assert (trained_run / "config.json").read_text() == config_before


def test_unknown_dataset():
    _assert_clean_error(run_script("train.py", "--dataset", "cifar_mnist"), "cifar_mnist")


def test_unknown_setting_and_bad_value(tmp_path):
    _assert_clean_error(run_script("train.py", "--set", "loss.gann=1", "--output-dir", str(tmp_path / "r")),
                        "loss.gann")
    _assert_clean_error(run_script("train.py", "--set", "model.gen_ch=wide", "--output-dir", str(tmp_path / "r")),
                        "model.gen_ch")
    _assert_clean_error(run_script("train.py", "--steps", "0"), "--steps")
    assert not (tmp_path / "r").exists()


def test_svhn_mnist_without_data_or_network(tmp_path):
    """No local files, nothing prepared in TFDS, no network: one line naming svhn and both remedies."""
    result = run_script("train.py", "--dataset", "svhn_mnist", "--output-dir", str(tmp_path / "r"),
                        env={"TFDS_DATA_DIR": str(tmp_path / "tfds"), "UNIT_DATA_DIR": "",
                             "UNIT_OFFLINE": "1"})
    _assert_clean_error(result, "svhn", "--data-dir", "TFDS")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("flags, message", [
    (["--dataset", "celeb_a", "--attribute", "Blonde"], "unknown CelebA attribute 'Blonde'"),
    (["--dataset", "cycle_gan/horse2giraffe"], "unknown CycleGAN data set 'horse2giraffe'"),
])
def test_names_only_tfds_knows_fail_before_the_run_directory(tmp_path, flags, message):
    """Checked when the data is opened (not by the config), still one line and nothing written."""
    result = run_script("train.py", *flags, "--output-dir", str(tmp_path / "r"),
                        env={"TFDS_DATA_DIR": str(tmp_path / "tfds"), "UNIT_OFFLINE": "1"})
    _assert_clean_error(result, message)
    assert not (tmp_path / "r").exists()


def test_evaluate_on_a_folder_that_is_no_run(tmp_path):
    _assert_clean_error(run_script("evaluate.py", "--run-dir", str(tmp_path)), "config.json")


def test_mixed_precision_flag_and_multi_worker_without_cluster(tmp_path):
    import train

    for flag, precision in (("bf16", "bfloat16"), ("fp16", "float16"), ("off", "float32"), ("auto", "auto")):
        args = train.parse_args(["--dataset", "mnist_usps", "--mixed-precision", flag])
        assert train.make_config(args).train.precision == precision
    assert train.make_config(train.parse_args(["--dataset", "mnist_usps"])).train.precision == "auto"
    result = run_script("train.py", "--dataset", "mnist_usps", "--strategy", "multi_worker", "--output-dir",
                        str(tmp_path / "r"), env={"TF_CONFIG": ""})
    _assert_clean_error(result, "TF_CONFIG")
    assert not (tmp_path / "r").exists()


def _warnings(result):
    return [line for line in result.stderr.splitlines() if line.startswith("warning:")]


@pytest.mark.parametrize("whose", ["user", "unit_tf"])
def test_bf16_where_onednn_has_no_bf16_kernels(tmp_path, data_dir, whose):
    """oneDNN on a CPU without AVX-512 (simulated) has no bfloat16 kernels. Where the user turned oneDNN on, an
    explicit bf16 stops with one error line naming both ways out, before a run directory exists; where unit_tf
    did, the command restarts itself once with TensorFlow's own kernels and runs emulated, with the one warning
    line of an emulated precision."""
    run = tmp_path / "R"
    env = {"TF_ENABLE_ONEDNN_OPTS": "1", "UNIT_AVX512": "0", "UNIT_NATIVE_BF16": "0"}
    if whose == "unit_tf":
        env["UNIT_ONEDNN_AUTO"] = "1"
    result = run_script("train.py", "--dataset", "mnist_usps", "--data-dir", str(data_dir), "--output-dir", str(run),
                        "--steps", "1", "--batch-size", "8", "--no-export", "--mixed-precision", "bf16",
                        *tiny_flags(), env=env)
    if whose == "user":
        _assert_clean_error(result, "bfloat16 has no oneDNN kernels", "--mixed-precision off",
                            "TF_ENABLE_ONEDNN_OPTS=0")
        assert not run.exists()
        return
    assert result.returncode == 0, result.stderr
    (line,) = _warnings(result)
    assert line.startswith("warning: bfloat16 is emulated on this CPU") and "train.py: error" not in result.stderr
    assert UNITConfig.from_dict(json.loads((run / "config.json").read_text())).train.precision == "bfloat16"


def test_precision_is_resolved_per_machine_and_an_emulated_bf16_warns_once(tmp_path, data_dir):
    """auto on a bf16 machine -> bfloat16 in config.json, silently; explicit bf16 on a machine without it ->
    one warning line with the measured cost; the run continues there in float32 with auto (no mismatch)."""
    run = tmp_path / "R"
    base = ["train.py", "--dataset", "mnist_usps", "--data-dir", str(data_dir), "--output-dir", str(run),
            "--batch-size", "8", "--no-export", *tiny_flags()]

    def precision():
        return UNITConfig.from_dict(json.loads((run / "config.json").read_text())).train.precision

    native = run_script(*base, "--steps", "1", env={"UNIT_NATIVE_BF16": "1"})
    assert native.returncode == 0, native.stderr
    assert _warnings(native) == [] and precision() == "bfloat16"
    explicit = run_script(*base, "--steps", "2", "--mixed-precision", "bf16", env={"UNIT_NATIVE_BF16": "1"})
    assert explicit.returncode == 0, explicit.stderr
    assert _warnings(explicit) == []

    emulated = run_script(*base, "--steps", "3", "--mixed-precision", "bf16", env={"UNIT_NATIVE_BF16": "0"})
    assert emulated.returncode == 0, emulated.stderr
    (line,) = _warnings(emulated)
    # The factor is measured: "slower" on an emulating CPU (a simulated one with native bf16 may be faster).
    assert re.search(r"\d+\.\d+x (slower|faster) than float32", line) and "--mixed-precision off" in line, line
    assert "bfloat16" in line and precision() == "bfloat16"

    resumed = run_script(*base, "--steps", "4", "--resume", "--mixed-precision", "auto",
                         env={"UNIT_NATIVE_BF16": "0"})
    assert resumed.returncode == 0, resumed.stderr
    assert _warnings(resumed) == [] and precision() == "float32" and "from step 3" in resumed.stdout
    off = run_script(*base, "--steps", "5", "--mixed-precision", "off", env={"UNIT_NATIVE_BF16": "0"})
    assert off.returncode == 0, off.stderr
    assert _warnings(off) == [] and precision() == "float32" and _steps(run / "metrics.csv")[-1] == 5
