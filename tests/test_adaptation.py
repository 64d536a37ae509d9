"""Domain adaptation: the classifier on the shared D trunk, source-only labels, the benchmark end to end."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import TINY, run_script, write_digit_dirs

from unit_tf import adaptation
from unit_tf.config import resolve_config
from unit_tf.data.pipeline import DomainData, eval_batches, unpaired_batches
from unit_tf.errors import UserError
from unit_tf.model import build_model

DA_TINY = {**TINY, "train.classifier_warmup_steps": 3, "train.eval_every": 2}


def da_config(dataset: str = "mnist_usps", **overrides):
    return resolve_config(dataset, "digits_da_small", overrides={**DA_TINY, **overrides})


def batch(config, n: int = 8, seed: int = 0) -> dict[str, tf.Tensor]:
    rng = np.random.default_rng(seed)
    size, m = config.model.image_size, config.model
    return {"x_a": tf.constant(rng.uniform(-1, 1, (n, size, size, m.channels_a)), tf.float32),
            "y_a": tf.constant(rng.integers(0, 10, n), tf.int32),
            "x_b": tf.constant(rng.uniform(-1, 1, (n, size, size, m.channels_b)), tf.float32)}


def test_classifier_head_sits_on_the_trunk_both_discriminators_share():
    model = build_model(da_config())
    disc = model.discriminator
    # Official CoDis32x32: only the first conv block is private; conv1-3 and the heads are shared objects.
    assert len(disc.private_a) == len(disc.private_b) == 1 and len(disc.shared) == 4
    x = batch(model.unit_config)["x_a"]
    assert model.classify(x, "a").shape == (8, 10) and model.classify(x, "b").shape == (8, 10)
    head_ids = {id(v) for v in model.classifier_head.trainable_variables}
    assert head_ids <= {id(v) for v in model.d_variables}
    # The head's variables exist once; D_a and D_b differ only in their private first block.
    for layer in disc.private_b:
        layer.set_weights([w + 0.5 for w in layer.get_weights()])
    assert not np.allclose(model.classify(x, "a"), model.classify(x, "b"))
    for la, lb in zip(disc.private_a, disc.private_b, strict=True):
        lb.set_weights(la.get_weights())
    np.testing.assert_allclose(model.classify(x, "a"), model.classify(x, "b"), rtol=1e-5, atol=1e-5)


def test_da_settings_need_a_head_and_a_shared_trunk():
    with pytest.raises(UserError, match="model.num_classes"):
        resolve_config("mnist_usps", "digits", overrides={"loss.classifier": 1.0})
    with pytest.raises(UserError, match="shared_discriminator_layers"):
        build_model(da_config(**{"model.shared_discriminator_layers": 1}))


@pytest.mark.parametrize("losses", ["paper", "official"])
def test_da_train_step_reports_finite_terms(losses):
    official = {"loss.gan": 1.0, "loss.kl": 1e-4, "loss.kl_reduction": "sum", "loss.recon": 1e-3,
                "loss.recon_distance": "sse", "loss.cycle_kl": 0.0, "loss.cycle_recon": 0.0,
                "loss.gan_recon_stream": True, "loss.classifier_translated": 1.0, "loss.translated_jitter": False}
    # The preset's target-entropy and target-consistency terms in both; its jittered translations in one, D's own
    # pass in the other.
    config = da_config(**(official if losses == "official" else {"train.precision": "bfloat16"}))
    model = build_model(config)
    out = model.train_step(batch(config))
    assert set(out) == set(model.metric_names)
    assert {"classifier", "feature", "source_batch_accuracy"} <= set(out)
    assert {"target_entropy", "target_consistency"} <= set(out)
    assert ("recon_sse" if losses == "official" else "recon_l1") in out
    assert not any(name.startswith("cycle") for name in out)  # DA presets: cycle weights 0, not computed
    assert all(np.isfinite(float(v)) for v in out.values())
    build_model(resolve_config("mnist_usps", "digits", overrides=TINY))  # policy back to float32


def test_target_entropy_rewards_confident_predictions_that_use_every_class():
    from unit_tf.losses import information_loss

    log_k = np.log(10)
    assert float(information_loss(tf.zeros([20, 10]))) == pytest.approx(0.0, abs=1e-6)  # unsure
    balanced = 30.0 * tf.one_hot(tf.range(20) % 10, 10)
    assert float(information_loss(balanced)) == pytest.approx(-log_k, abs=1e-4)  # sure, every class
    collapsed = 30.0 * tf.one_hot(tf.zeros(20, tf.int32), 10)
    assert float(information_loss(collapsed)) == pytest.approx(0.0, abs=1e-4)  # sure, one class: no reward


@pytest.mark.parametrize("channels", [1, 3])
def test_colour_jitter_inverts_and_reorders_channels_only(channels):
    from itertools import permutations, product

    from unit_tf.layers import colour_jitter

    x = tf.constant(np.random.default_rng(0).uniform(-1, 1, (200, 4, 4, channels)), tf.float32)
    y = colour_jitter(x, tf.constant([3, 4])).numpy()
    seen = set()
    for xi, yi in zip(x.numpy(), y, strict=True):
        found = [(signs, order) for signs in product((1, -1), repeat=channels)
                 for order in permutations(range(channels))
                 if np.array_equal(yi, np.array(signs) * xi[..., list(order)])]
        assert len(found) == 1  # each output is its input, channels reordered, each inverted or not
        seen.add(found[0])
    assert len(seen) == (8 * 6 if channels == 3 else 2)  # every sign and order occurs


def test_source_only_training_touches_only_the_classifier_path():
    config = da_config()
    model = build_model(config)
    before = {v.path: v.numpy().copy() for v in model.trainable_variables}
    rng = np.random.default_rng(0)
    source = DomainData("mnist", rng.integers(0, 255, (32, 32, 32, 1), dtype=np.uint8), rng.integers(0, 10, 32))
    adaptation.train_source_only(model, source, steps=3, batch_size=8, seed=0)
    changed = {v.path for v in model.trainable_variables if not np.array_equal(before[v.path], v.numpy())}
    path = {v.path for layer in model.discriminator.private_a + model.discriminator.shared[:-1]
            + [model.classifier_head] for v in layer.trainable_variables}
    assert changed == path
    assert adaptation.copy_source_path_to_target(model)
    x = batch(config)["x_b"]
    np.testing.assert_allclose(model.classify(x, "a"), model.classify(x, "b"), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dataset", ["mnist_mnistm", "svhn_mnist"])
def test_target_path_starts_as_the_source_only_classifier_across_channel_counts(dataset):
    """Gray source, RGB target (and the reverse): after the copy, D_b on a target image classifies exactly as the
    source-only path on that image converted as the target accuracy converts it (match_channels)."""
    from unit_tf.data.pipeline import match_channels

    config = da_config(dataset)
    assert config.model.channels_a != config.model.channels_b
    model = build_model(config)
    x = batch(config)["x_b"]
    model.classify(x, "b")  # build D_b
    assert adaptation.copy_source_path_to_target(model)
    np.testing.assert_allclose(model.classify(x, "b"), model.classify(match_channels(x, config.model.channels_a), "a"),
                               rtol=1e-4, atol=1e-4)


def test_repeated_evaluation_reuses_one_traced_predictor():
    model = build_model(da_config())
    rng = np.random.default_rng(0)
    data = DomainData("usps", rng.integers(0, 255, (12, 32, 32, 1), dtype=np.uint8), rng.integers(0, 10, 12))
    first = adaptation.accuracy(model, data, "b")
    predictor = adaptation._predictor(model, "b", model.test_time_jitter("b"))
    assert adaptation.accuracy(model, data, "b") == first
    assert adaptation._predictor(model, "b", model.test_time_jitter("b")) is predictor
    assert predictor.experimental_get_tracing_count() == 1


@pytest.mark.parametrize("channels", [1, 3])
def test_colour_variants_are_what_colour_jitter_draws(channels):
    """The test-time average runs over exactly the images colour_jitter can produce, each once, x first."""
    from unit_tf.layers import colour_jitter, colour_variants

    x = tf.constant(np.random.default_rng(0).uniform(-1, 1, (4, 5, 5, channels)), tf.float32)
    variants = [v.numpy() for v in colour_variants(x)]
    assert len(variants) == (48 if channels == 3 else 2)
    np.testing.assert_array_equal(variants[0], x.numpy())
    assert len({v.tobytes() for v in variants}) == len(variants)
    for seed in range(20):
        drawn = colour_jitter(x, tf.constant([seed, 1])).numpy()
        for i in range(4):  # each jittered image is one of the variants of its original
            assert any(np.array_equal(drawn[i], v[i]) for v in variants)


def test_target_prediction_averages_over_colour_variants():
    """With model.test_time_jitter (the digits_da* presets) D_b's prediction is the mean softmax over the
    colour variants; D_a's and, without the flag, D_b's stay the plain classifier."""
    from unit_tf.layers import colour_variants

    config = da_config("mnist_mnistm")
    assert config.model.test_time_jitter
    model = build_model(config)
    x = batch(config)["x_b"]
    expected = np.mean([tf.nn.softmax(model.classify(v, "b")).numpy() for v in colour_variants(x)], axis=0)
    np.testing.assert_allclose(model.class_probabilities(x, "b", model.test_time_jitter("b")), expected,
                               rtol=1e-5, atol=1e-6)
    assert not model.test_time_jitter("a")
    images = np.random.default_rng(1).integers(0, 255, (40, 32, 32, 3), dtype=np.uint8)
    plain = adaptation.predict_classes(model, images, "b", test_time_jitter=False)
    averaged = adaptation.predict_classes(model, images, "b")
    np.testing.assert_array_equal(averaged, np.argmax(np.concatenate(
        [model.class_probabilities(x, "b", True).numpy() for x in eval_batches(images, 500)]), -1))
    np.testing.assert_array_equal(plain, np.argmax(np.concatenate(
        [model.classify(x, "b").numpy() for x in eval_batches(images, 500)]), -1))
    assert not build_model(da_config("mnist_mnistm", **{"model.test_time_jitter": False})).test_time_jitter("b")


def test_training_batches_carry_source_labels_only():
    rng = np.random.default_rng(0)
    a = DomainData("mnist", rng.integers(0, 255, (16, 32, 32, 1), dtype=np.uint8), np.arange(16) % 10)
    b = DomainData("usps", rng.integers(0, 255, (16, 32, 32, 1), dtype=np.uint8), np.full(16, 7))
    element = next(iter(unpaired_batches(a, b, 8, seed=0, source_labels=True)))
    assert set(element) == {"x_a", "y_a", "x_b"}


def test_target_labels_do_not_change_training(tmp_path):
    """Two runs that differ ONLY in the target domain's labels (train and test) end with identical weights,
    and each logs the target accuracy of its own test labels: the scrambled ones were read, for reporting."""
    from unit_tf.data.pipeline import load_pair
    from unit_tf.training import train

    weights, logged, expected = [], [], []
    predictions = None
    for name in ("true", "scrambled"):
        data_dir = write_digit_dirs(tmp_path / f"data_{name}", n_train=32, n_test=16)
        if predictions is not None:  # train labels permuted; test labels = the true run's final predictions
            for split, labels in (("train", None), ("test", predictions)):
                path = data_dir / "usps" / f"{split}.npz"
                with np.load(path) as f:
                    x, y = f["x"], f["y"]
                np.savez(path, x=x, y=(y * 7 + 3) % 10 if labels is None else labels)
        config = da_config(**{"data.data_dir": str(data_dir), "train.steps": 3, "train.deterministic": True})
        model = train(config, tmp_path / f"run_{name}", verbose=0).model
        weights.append([(v.name, v.numpy()) for v in model.variables])  # same order in both models
        test_b = load_pair(config.data.dataset, "test", str(data_dir), config.model.image_size)[1]
        predictions = adaptation.predict_classes(model, test_b.images, "b")
        expected.append(float(np.mean(predictions == test_b.labels)))
        logged.append(adaptation.read_accuracy_csv(tmp_path / f"run_{name}" / "accuracy.csv"))
    assert len(weights[0]) == len(weights[1])
    for (name, first), (_, second) in zip(*weights, strict=True):
        np.testing.assert_array_equal(first, second, err_msg=name)
    assert [r["source_accuracy"] for r in logged[0]] == [r["source_accuracy"] for r in logged[1]]
    # The scrambled run's test labels are the final model's own predictions: it logs 100 % if it read them.
    assert expected[1] == 1.0 and expected[0] < 1.0
    # The final row carries the model's own (colour-averaged) prediction's accuracy beside the plain one.
    assert [rows[-1]["target_accuracy_jitter_mean"] for rows in logged] == pytest.approx(expected, abs=1e-5)


def test_warm_up_progress_says_how_long_and_then_reports_every_n_steps(monkeypatch, capsys):
    """The lines a log shows while the source-only warm-up runs: the estimate after a few timed steps (the
    first, tracing step left out), then step, accuracy so far and time left every `every` steps."""
    from unit_tf import callbacks

    clock = iter([110.0 + 0.5 * i for i in range(100)])  # ends of steps 1..100: 2 steps/s after the first
    monkeypatch.setattr(callbacks.time, "time", lambda: next(clock))
    progress = callbacks.ProgressLines("Source-only classifier", 100, every=25)
    progress.on_train_begin()
    for step in range(1, 101):
        progress.on_train_batch_end(step - 1, {"source_only_batch_accuracy": np.float32(step / 200)})
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Source-only classifier: about 50 s for 100 steps (2.00 steps/s over steps 2-11)"
    assert lines[1:] == [f"Source-only classifier step {n}/100 source_only_batch_accuracy={n / 200:.4g} 2.00 "
                         f"steps/s, {left} s left" for n, left in ((25, 38), (50, 25), (75, 13), (100, 0))]
    assert callbacks.format_duration(830) == "13 min 50 s" and callbacks.format_duration(7500) == "2 h 5 min"


def test_a_logged_run_shows_the_warm_up_progress(tmp_path, capsys):
    """Without a terminal, train() reports the warm-up as it does UNIT's steps (every train.log_every)."""
    from unit_tf.training import train

    data_dir = write_digit_dirs(tmp_path / "data", n_train=32, n_test=16)
    config = da_config(**{"data.data_dir": str(data_dir), "train.steps": 1, "train.classifier_warmup_steps": 4})
    train(config, tmp_path / "run", verbose=0)
    out = capsys.readouterr().out
    assert "Source-only classifier: 4 steps on labelled mnist before UNIT's first step" in out
    assert "--set train.classifier_warmup_steps=N" in out
    progress = [line for line in out.splitlines() if line.startswith("Source-only classifier step")]
    assert [line.split()[3] for line in progress] == ["2/4", "4/4"]
    assert all("source_only_batch_accuracy=" in line and line.endswith(" left") for line in progress)
    assert "Source-only classifier: about " in out


def test_evaluate_and_benchmark_end_to_end(tmp_path):
    data_dir = write_digit_dirs(tmp_path / "data", n_train=32, n_test=16)
    sets = [a for k, v in DA_TINY.items() if k != "train.eval_every" for a in ("--set", f"{k}={v}")]
    bench = run_script("benchmarks/domain_adaptation.py", "--pair", "usps_mnist", "--minutes", "0.05",
                       "--data-dir", str(data_dir), "--output-dir", str(tmp_path / "run"),
                       "--precision", "bfloat16", *sets)  # evaluate.py below restores a bf16 model
    assert bench.returncode == 0, bench.stderr[-2000:]
    lines = bench.stdout.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert {"pair", "preset", "minutes", "steps", "source_only_accuracy", "unit_accuracy", "hardware"} <= set(result)
    assert result["pair"] == "usps_mnist" and result["steps"] >= 1
    assert 0.0 <= result["unit_accuracy"] <= 1.0 and 0.0 <= result["source_only_accuracy"] <= 1.0

    evaluated = run_script("evaluate.py", "--run-dir", str(tmp_path / "run"), "--data-dir", str(data_dir))
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    report = json.loads(evaluated.stdout.strip().splitlines()[-1])
    assert 0.0 <= report["target_accuracy"] <= 1.0 and 0.0 <= report["source_accuracy"] <= 1.0
    # The benchmark reports the final model, the one evaluate.py restores (16 test images: exact to 4 places).
    assert result["steps"] == report["step"]
    assert result["unit_accuracy"] == round(report["target_accuracy"], 4)
    # The preset's prediction is the colour average; both rules are reported, each as evaluate.py measures it.
    assert result["unit_accuracy"] == round(report["target_accuracy_jitter_mean"], 4)
    assert result["unit_accuracy_plain"] == round(report["target_accuracy_plain"], 4)
    assert result["unit_source_accuracy"] == round(report["source_accuracy"], 4)
    assert result["source_only_accuracy"] == round(report["source_only_target_accuracy"], 4)
    eval_dir = tmp_path / "run" / "eval"
    assert list(eval_dir.glob("confusion_target_test_step_*.png"))
    assert (eval_dir / "accuracy_vs_step.png").is_file() and (eval_dir / "source_only.json").is_file()


def test_benchmark_runs_each_seed_in_its_own_directory(tmp_path):
    """--seeds: one JSON line per seed (the single-seed line plus the whole-budget source-only baseline), each
    run in OUTPUT_DIR/seed_<N>, then the summary line."""
    data_dir = write_digit_dirs(tmp_path / "data", n_train=32, n_test=16)
    sets = [a for k, v in DA_TINY.items() for a in ("--set", f"{k}={v}")]
    bench = run_script("benchmarks/domain_adaptation.py", "--pair", "mnist_usps", "--minutes", "0.02",
                       "--seeds", "3,5", "--data-dir", str(data_dir), "--output-dir", str(tmp_path / "runs"), *sets)
    assert bench.returncode == 0, bench.stderr[-2000:]
    *per_seed, summary = [json.loads(line) for line in bench.stdout.strip().splitlines()]
    assert [line["seed"] for line in per_seed] == [3, 5]
    for line in per_seed:
        run_dir = tmp_path / "runs" / f"seed_{line['seed']}"
        assert line["run_dir"] == str(run_dir) and line["steps"] >= 1
        assert json.loads((run_dir / "config.json").read_text())["train"]["seed"] == line["seed"]
        final = adaptation.read_accuracy_csv(run_dir / "accuracy.csv")[-1]
        assert final["target_accuracy_jitter_mean"] == pytest.approx(line["unit_accuracy"], abs=1e-4)
        assert final["target_accuracy"] == pytest.approx(line["unit_accuracy_plain"], abs=1e-4)
        assert line["source_only_whole_budget_steps"] >= 1
        assert 0.0 <= line["source_only_whole_budget_accuracy"] <= 1.0
        assert 0.0 <= line["source_only_whole_budget_accuracy_jitter_mean"] <= 1.0
    assert summary["summary"] == "seeds" and summary["seeds"] == [3, 5]
    units = [line["unit_accuracy"] for line in per_seed]
    assert summary["unit_accuracy"]["min"] == min(units) and summary["unit_accuracy"]["max"] == max(units)
    assert set(summary["source_only_whole_budget_accuracy"]) == {"mean", "std", "min", "max"}


def test_seed_summary_is_mean_sample_std_min_max():
    from helpers import load_benchmark

    bench = load_benchmark("domain_adaptation")
    common = {"pair": "usps_mnist", "preset": "digits_da_small", "minutes": 30, "hardware": "cpu"}
    lines = [{**common, "seed": seed, "unit_accuracy": unit, "source_only_accuracy": 0.7,
              "source_only_whole_budget_accuracy": whole}
             for seed, unit, whole in ((0, 0.90, 0.80), (1, 0.94, 0.82), (2, 0.95, 0.84))]
    summary = bench.summarize_seeds(lines)
    assert summary["seeds"] == [0, 1, 2] and summary["minutes"] == 30
    assert summary["unit_accuracy"] == {"mean": 0.93, "std": 0.0265, "min": 0.90, "max": 0.95}
    assert summary["source_only_accuracy"] == {"mean": 0.7, "std": 0.0, "min": 0.7, "max": 0.7}
    assert summary["source_only_whole_budget_accuracy"] == {"mean": 0.82, "std": 0.02, "min": 0.80, "max": 0.84}
    one = bench.summarize_seeds([{k: v for k, v in lines[0].items() if k != "source_only_whole_budget_accuracy"}])
    assert one["unit_accuracy"]["std"] is None and "source_only_whole_budget_accuracy" not in one


@pytest.mark.parametrize("flags, named", [(["--minutes", "-1"], "--minutes"),
                                          (["--minutes", "1", "--seeds", "0,x"], "--seeds"),
                                          (["--minutes", "1", "--seeds", "1,1"], "each seed once"),
                                          (["--minutes", "1", "--seed", "0", "--seeds", "1,2"], "--seeds")])
def test_benchmark_rejects_bad_budget_and_seeds(flags, named):
    result = run_script("benchmarks/domain_adaptation.py", "--pair", "mnist_usps", *flags)
    assert result.returncode == 2 and named in result.stderr and "Traceback" not in result.stderr


def test_export_has_classifier_signatures(tmp_path):
    from unit_tf.export import export_model

    config = da_config()
    model = build_model(config)
    target = export_model(model, tmp_path / "unit")
    loaded = tf.saved_model.load(str(target))
    x = (batch(config)["x_b"] + 1) / 2
    out = loaded.signatures["classify_b"](images=x)
    expected = model.class_probabilities(x * 2 - 1, "b", test_time_jitter=True)  # the preset's prediction
    np.testing.assert_allclose(out["probabilities"], expected, atol=1e-5)
    np.testing.assert_array_equal(out["classes"], np.argmax(expected, -1))
    x_a = (batch(config)["x_a"] + 1) / 2
    np.testing.assert_allclose(loaded.signatures["classify_a"](images=x_a)["probabilities"],
                               tf.nn.softmax(model.classify(x_a * 2 - 1, "a")), atol=1e-5)
    assert {"classify_a", "classify_b", "a_to_b"} <= set(loaded.signatures)


def test_svhn_mnist_adaptation_runs_on_tfds_mock_data(tmp_path, monkeypatch):
    """The SVHN -> MNIST pipeline end to end from TFDS (mocked: no download), with the default DA preset."""
    import tensorflow_datasets as tfds

    from unit_tf.data import digits
    from unit_tf.training import train

    monkeypatch.setattr(digits, "network_reachable", lambda host, timeout=3.0: True)
    config = resolve_config("svhn_mnist", None, overrides={**DA_TINY, "train.steps": 2})
    assert config.preset == "digits_da" and config.data.invert_b and config.model.channels_a == 3
    with tfds.testing.mock_data(num_examples=16):
        model = train(config, tmp_path / "run", verbose=0).model
    assert int(model.g_optimizer.iterations.numpy()) == 2
    baseline = adaptation.read_json(tmp_path / "run" / "eval" / "source_only.json")
    assert baseline["target_path_initialized"] is True  # RGB source, gray target: D_b's first kernel summed from D_a's
    assert len(adaptation.read_accuracy_csv(tmp_path / "run" / "accuracy.csv")) == 1


@pytest.mark.parametrize("official", [False, True])
def test_feature_term_from_the_gan_pass_equals_the_second_pass_without_dropout(official):
    """loss.feature_from_gan_pass reads the D update's own features: without dropout (the only difference
    between the two passes) the feature term and the D update are the same as with the official second pass."""
    settings = {"model.dis_dropout": False, "loss.gan_recon_stream": official}
    results = []
    for shared in (False, True):
        keras.utils.set_random_seed(0)  # the same initial weights for both
        model = build_model(da_config(**settings, **{"loss.feature_from_gan_pass": shared}))
        logs = model.train_step(batch(model.unit_config))
        results.append((float(logs["feature"]), [v.numpy() for v in model.d_variables]))
    (feature_2, weights_2), (feature_1, weights_1) = results
    assert feature_1 > 0 and feature_1 == pytest.approx(feature_2, rel=1e-4)
    for a, b in zip(weights_1, weights_2, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-6)


def test_an_export_measures_as_its_run(tmp_path):
    """evaluate.py --saved-model (a shipped model, no run directory) reports the run's accuracies and errors."""
    from unit_tf.evaluation import evaluate, evaluate_export
    from unit_tf.export import export_model
    from unit_tf.training import train

    data_dir = write_digit_dirs(tmp_path / "data", n_train=32, n_test=16)
    config = da_config(**{"data.data_dir": str(data_dir), "train.steps": 3})
    model = train(config, tmp_path / "run", verbose=0).model
    export_model(model, tmp_path / "saved")
    run = evaluate(tmp_path / "run")
    shipped = evaluate_export(tmp_path / "saved")  # the model folder: its highest version
    assert shipped["saved_model"] == str(tmp_path / "saved" / "1")
    for key in ("source_accuracy", "target_accuracy"):
        assert shipped[key] == run[key], key
    for key in ("recon_l1_a", "recon_l1_b", "cycle_l1_a", "cycle_l1_b"):
        assert shipped[key] == pytest.approx(run[key], abs=1e-5), key


def test_final_evaluation_adds_the_colour_averaged_accuracy_to_its_row(tmp_path):
    """accuracy.csv: plain rows while training; the final evaluation of an already logged step replaces that row
    with one that also holds the model's own (colour-averaged) accuracy; an older 3-column file gains the column."""
    import csv

    model = build_model(da_config("mnist_mnistm"))
    rng = np.random.default_rng(0)
    test_a = DomainData("mnist", rng.integers(0, 255, (8, 32, 32, 1), dtype=np.uint8), np.arange(8) % 10)
    test_b = DomainData("mnist_m", rng.integers(0, 255, (8, 32, 32, 3), dtype=np.uint8), np.arange(8) % 10)
    path = tmp_path / "accuracy.csv"
    path.write_text("step,source_accuracy,target_accuracy\n2,0.5,0.25\n")  # a run logged before the column
    logger = adaptation.AccuracyLogger(path, tf.summary.create_noop_writer(), 4, test_a, test_b)
    logger.set_model(model)
    plain = logger.log(4)
    final = logger.log(4, final=True)
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == list(adaptation.ACCURACY_COLUMNS) and [r[0] for r in rows[1:]] == ["2", "4"]
    assert final["target_accuracy"] == plain["target_accuracy"] and "target_accuracy_jitter_mean" not in plain
    assert float(rows[2][3]) == pytest.approx(adaptation.accuracy(model, test_b, "b", test_time_jitter=True), abs=1e-5)
    assert adaptation.read_accuracy_csv(path)[0] == {"step": 2.0, "source_accuracy": 0.5, "target_accuracy": 0.25}


def test_consistency_loss_counts_confident_reference_predictions_only():
    from unit_tf import losses

    reference = tf.constant([[10.0, 0.0, 0.0], [0.0, 0.1, 0.0]])  # sure of class 0; unsure
    logits = tf.constant([[0.0, 2.0, 0.0], [5.0, 0.0, 0.0]])
    expected = float(tf.nn.sparse_softmax_cross_entropy_with_logits([0], logits[:1])[0]) / 2  # mean over the batch
    assert float(losses.consistency_loss(reference, logits, 0.95)) == pytest.approx(expected, rel=1e-6)
    assert float(losses.consistency_loss(reference, logits, 1.01)) == 0.0
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([reference, logits])
        loss = losses.consistency_loss(reference, logits, 0.0)
    assert tape.gradient(loss, reference) is None and tape.gradient(loss, logits) is not None


def test_target_consistency_trains_the_discriminators_only():
    """The term reads unlabelled target images through D_b (a jittered copy against the image's own confident
    prediction): it enters the D update and no E/G weight."""
    config = da_config("mnist_mnistm", **{"loss.target_consistency": 10.0, "loss.consistency_threshold": 0.0})
    model = build_model(config)
    data = batch(config)
    model.train_step(data)  # builds every variable
    with tf.GradientTape() as tape:
        s = model._forward(data["x_a"], data["x_b"])  # on the tape: a path through E/G would show
        d_a, d_b = model.discriminators.pass_rows({"real": data["x_a"]}, {"real": data["x_b"]}, training=True)
        term = model._adaptation_terms(data["y_a"], s, d_a, d_b)["target_consistency"]
    assert float(term) > 0
    grads = tape.gradient(term, model.d_variables + model.g_variables)
    d_grads, g_grads = grads[:len(model.d_variables)], grads[len(model.d_variables):]
    assert any(g is not None for g in d_grads) and all(g is None for g in g_grads)
