"""Training options of issue 18: learning-rate schedules, --step checkpoints, keep_checkpoints, identity."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import synthetic_digits, tiny_config

import train as train_cli
from unit_tf import export
from unit_tf.config import OptimizerConfig, UNITConfig
from unit_tf.errors import UserError
from unit_tf.evaluation import evaluate
from unit_tf.export import save_keras
from unit_tf.losses import term_names
from unit_tf.model import build_model
from unit_tf.optimizers import LinearDecay, StepDecay, learning_rate, make_optimizer
from unit_tf.runs import load_trained
from unit_tf.training import train

# ------------------------------------------------------------------------------------ learning-rate schedules


def test_constant_schedule_is_a_plain_float():
    assert learning_rate(OptimizerConfig(learning_rate=3e-4), 1000) == 3e-4


def test_step_schedule_multiplies_by_gamma_every_schedule_steps():
    schedule = learning_rate(OptimizerConfig(learning_rate=1.0, schedule="step", schedule_steps=10,
                                             schedule_gamma=0.5), 1000)
    assert isinstance(schedule, StepDecay)
    rates = {step: float(schedule(step)) for step in (0, 9, 10, 19, 20, 25, 100)}
    assert rates == {0: 1.0, 9: 1.0, 10: 0.5, 19: 0.5, 20: 0.25, 25: 0.25, 100: 0.5**10}


def test_linear_decay_is_constant_then_reaches_zero_at_train_steps():
    schedule = learning_rate(OptimizerConfig(learning_rate=1.0, schedule="linear_decay", decay_start=0.5), 100)
    assert isinstance(schedule, LinearDecay) and (schedule.start, schedule.end) == (50, 100)
    rates = {step: float(schedule(tf.constant(step, tf.int64))) for step in (0, 50, 60, 75, 99, 100, 150)}
    np.testing.assert_allclose(list(rates.values()), [1.0, 1.0, 0.8, 0.5, 0.02, 0.0, 0.0], atol=1e-7)


@pytest.mark.parametrize("schedule", [StepDecay(2e-4, 7, 0.3), LinearDecay(1e-4, 3, 11)])
def test_schedules_serialize(schedule):
    again = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
    assert type(again) is type(schedule) and again.get_config() == schedule.get_config()
    for step in range(12):
        assert float(again(step)) == float(schedule(step))


@pytest.mark.parametrize("fast_paths", ["auto", "off"])  # FusedAdam (on CPUs) and keras Adam
def test_both_optimizers_apply_the_scheduled_rate_through_the_loss_scale_wrapper(fast_paths):
    """A constant gradient makes Adam's first steps move by exactly the learning rate."""
    cfg = OptimizerConfig(learning_rate=0.1, schedule="step", schedule_steps=1, schedule_gamma=0.5, weight_decay=0)
    optimizer = make_optimizer(cfg, "g", fast_paths=fast_paths)
    assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    variable = tf.Variable([0.0])
    optimizer.build([variable])
    moves = []
    for _ in range(3):
        before = float(variable.numpy()[0])
        optimizer.apply_gradients([(tf.constant([1.0]), variable)])
        moves.append(before - float(variable.numpy()[0]))
    np.testing.assert_allclose(moves, [0.1, 0.05, 0.025], rtol=1e-4)
    assert float(optimizer.learning_rate) == pytest.approx(0.0125)


def test_schedule_settings_round_trip_and_are_checked():
    config = tiny_config(**{"optimizer.schedule": "linear_decay", "optimizer.decay_start": 0.25,
                            "optimizer.schedule_steps": 7, "optimizer.schedule_gamma": 0.1})
    again = UNITConfig.from_dict(config.to_dict())
    assert again == config and again.optimizer.schedule == "linear_decay" and again.optimizer.decay_start == 0.25
    for key, value in [("optimizer.schedule", "cosine"), ("optimizer.schedule_steps", 0),
                       ("optimizer.schedule_gamma", 0.0), ("optimizer.schedule_gamma", 1.5),
                       ("optimizer.decay_start", 1.0), ("optimizer.decay_start", -0.1)]:
        with pytest.raises(UserError, match=key.replace(".", r"\.")) as err:
            tiny_config(**{key: value})
        assert "\n" not in str(err.value)


def test_keras_file_keeps_the_schedule(tmp_path):
    model = build_model(tiny_config(**{"optimizer.schedule": "step", "optimizer.schedule_steps": 3}))
    loaded = keras.models.load_model(save_keras(model, tmp_path / "unit.keras"))
    schedule = loaded.g_optimizer.inner_optimizer._learning_rate
    assert isinstance(schedule, StepDecay) and schedule.get_config() == {"rate": 2e-4, "step_size": 3, "gamma": 0.5}


def test_dis_lr_scale_scales_the_discriminators_rate_only():
    """TTUR: the d optimizer runs at dis_lr_scale times the g optimizer's rate, schedule included."""
    model = build_model(tiny_config(**{"optimizer.dis_lr_scale": 4.0, "optimizer.schedule": "step",
                                       "optimizer.schedule_steps": 3}))
    d_rate = model.d_optimizer.inner_optimizer._learning_rate
    g_rate = model.g_optimizer.inner_optimizer._learning_rate
    assert d_rate.get_config() == {"rate": 8e-4, "step_size": 3, "gamma": 0.5}
    assert g_rate.get_config() == {"rate": 2e-4, "step_size": 3, "gamma": 0.5}
    with pytest.raises(UserError, match=r"optimizer\.dis_lr_scale"):
        tiny_config(**{"optimizer.dis_lr_scale": 0.0})


class _Rates(keras.callbacks.Callback):
    """The g optimizer's learning rate as each step starts."""

    def __init__(self) -> None:
        super().__init__()
        self.rates: list[float] = []

    def on_train_batch_begin(self, batch, logs=None):
        self.rates.append(float(self.model.g_optimizer.learning_rate))


class _Crash(keras.callbacks.Callback):
    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.g_optimizer.iterations.numpy()) == self.at:
            raise RuntimeError("crash")


def _run_config(data_dir, **overrides):
    return tiny_config("mnist_usps", **{"data.data_dir": str(data_dir), "train.steps": 6,
                                        "optimizer.schedule": "linear_decay", "optimizer.decay_start": 1 / 3,
                                        "train.keep_checkpoints": 0, **overrides})


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory, data_dir):
    """6 uninterrupted steps with a linear decay from step 2, checkpoints every 2 steps, all kept."""
    run = tmp_path_factory.mktemp("runs") / "straight"
    rates = _Rates()
    train(_run_config(data_dir), run, verbose=0, callbacks=[rates])
    return run, rates.rates


def test_linear_decay_during_training(straight_run):
    _, rates = straight_run
    np.testing.assert_allclose(rates, [2e-4, 2e-4, 2e-4, 1.5e-4, 1e-4, 0.5e-4], rtol=1e-6)


def test_a_resumed_run_continues_the_schedule_exactly(straight_run, tmp_path, data_dir):
    _, uninterrupted = straight_run
    run = tmp_path / "resumed"
    first, second = _Rates(), _Rates()
    with pytest.raises(RuntimeError, match="crash"):
        train(_run_config(data_dir), run, verbose=0, callbacks=[first, _Crash(at=4)])
    resumed = train(_run_config(data_dir), run, verbose=0, callbacks=[second])
    assert resumed.step == 6
    assert first.rates[:4] + second.rates == uninterrupted
    assert float(resumed.model.g_optimizer.learning_rate) == 0.0
    assert float(resumed.model.d_optimizer.learning_rate) == 0.0


# -------------------------------------------------------------------------------- keep_checkpoints, --step


def test_keep_checkpoints_zero_keeps_every_checkpoint(straight_run):
    run, _ = straight_run
    assert sorted(p.name for p in (run / "checkpoints").glob("ckpt-*.index")) == [
        "ckpt-2.index", "ckpt-4.index", "ckpt-6.index"]


def test_keep_checkpoints_flag_and_check():
    args = train_cli.parse_args(["--dataset", "mnist_usps", "--keep-checkpoints", "0"])
    assert train_cli.make_config(args).train.keep_checkpoints == 0
    assert train_cli.make_config(train_cli.parse_args(["--dataset", "mnist_usps"])).train.keep_checkpoints == 3
    with pytest.raises(SystemExit):
        train_cli.parse_args(["--keep-checkpoints", "-1"])
    with pytest.raises(UserError, match="train.keep_checkpoints must be >= 0"):
        tiny_config(**{"train.keep_checkpoints": -1})


def _outputs(model, x_a):
    return model.translate(tf.constant(x_a), "a", "b").numpy()


def test_an_older_step_is_loaded_evaluated_and_exported(straight_run, data_dir, tmp_path):
    run, _ = straight_run
    older, _, step = load_trained(run, step=2)
    latest, _, latest_step = load_trained(run)
    assert (step, latest_step) == (2, 6)
    x_a = synthetic_digits(4, 32, 1, seed=5)[0].astype(np.float32) / 127.5 - 1.0
    assert not np.allclose(_outputs(older, x_a), _outputs(latest, x_a))
    assert evaluate(run, str(data_dir), step=4)["step"] == 4
    assert export.main(["--run-dir", str(run), "--output", str(tmp_path / "m"), "--step", "2"]) == 0
    served = tf.saved_model.load(str(tmp_path / "m" / "1")).signatures["a_to_b"]
    y = served(images=tf.constant((x_a + 1.0) / 2.0))["images"].numpy()
    np.testing.assert_allclose(y, np.clip((_outputs(older, x_a) + 1.0) / 2.0, 0, 1), atol=1e-5)


def test_a_missing_step_is_one_line_naming_the_steps_there_are(straight_run):
    run, _ = straight_run
    with pytest.raises(UserError) as err:
        load_trained(run, step=3)
    assert "no checkpoint at step 3" in str(err.value) and "(checkpoints: 2, 4, 6)" in str(err.value)
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------------------------------------- identity


def test_identity_is_absent_at_zero_and_needs_equal_channels():
    assert "identity" not in term_names(tiny_config().loss)
    assert "identity" in term_names(tiny_config("mnist_usps", **{"loss.identity": 5.0}).loss)
    with pytest.raises(UserError, match="loss.identity needs domains with the same channels") as err:
        tiny_config("svhn_mnist", **{"loss.identity": 5.0})
    assert "\n" not in str(err.value)


def test_identity_term_is_logged_and_trains():
    config = tiny_config("mnist_usps", **{"loss.identity": 5.0})
    model = build_model(config)
    x_a, _ = synthetic_digits(8, 32, 1, seed=0)
    x_b, _ = synthetic_digits(8, 32, 1, seed=1)
    batch = {"x_a": tf.constant(x_a / 127.5 - 1, tf.float32), "x_b": tf.constant(x_b / 127.5 - 1, tf.float32)}
    history = model.fit(tf.data.Dataset.from_tensors(batch).repeat(), epochs=1, steps_per_epoch=2, verbose=0,
                        shuffle=False)
    assert "identity" in model.metric_names
    values = history.history["identity"]
    assert np.isfinite(values[-1]) and values[-1] > 0
    assert int(model.g_optimizer.iterations.numpy()) == 2


# ------------------------------------------------------------------------------------------------ data seed


def test_data_seed_orders_the_batches_apart_from_the_weights_seed(data_dir):
    """train.data_seed replaces train.seed for the batches only; unset, the batches follow train.seed."""
    from unit_tf.data.sources import load_run_data

    def first_batch(**seeds) -> np.ndarray:
        config = tiny_config("mnist_usps", **{"data.data_dir": str(data_dir), **seeds})
        batch = next(iter(load_run_data(config, 2).train_batches(0)))
        return np.concatenate([batch["x_a"].numpy().ravel(), batch["x_b"].numpy().ravel()])

    assert UNITConfig().train.batch_seed == 0
    own = first_batch(**{"train.seed": 1, "train.data_seed": 5})
    np.testing.assert_array_equal(own, first_batch(**{"train.seed": 5}))
    assert not np.array_equal(own, first_batch(**{"train.seed": 1}))


# ------------------------------------------------------------------------------- discriminator scales


@pytest.mark.parametrize(("size", "scales"), [(8, 1), (16, 2), (24, 2), (32, 3), (64, 3)])
def test_small_keeps_as_many_discriminator_scales_as_the_image_size_allows(tmp_path, size, scales):
    from unit_tf.config import resolve_config

    folders = {"data.domain_a": str(tmp_path), "data.domain_b": str(tmp_path), "model.image_size": size}
    assert resolve_config("folders", "small", overrides=folders).model.dis_scales == scales


def test_discriminator_scales_the_user_sets_are_checked_not_lowered(tmp_path):
    from unit_tf.config import resolve_config

    folders = {"data.domain_a": str(tmp_path), "data.domain_b": str(tmp_path), "model.image_size": 16}
    with pytest.raises(UserError, match="coarsest scale sees 4 px"):
        resolve_config("folders", "small", overrides={**folders, "model.dis_scales": 3})
