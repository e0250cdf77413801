"""The loop's time budget (LoopConfig.time_budget): where it stops, what counts, schedules
that follow the fraction spent, resume, errors. Most tests time the loop with a fake clock
that only the steps advance, so they are exact and fast."""

import json
import math
import time

import keras
import pytest
import tensorflow as tf

from kerasnas import data as data_lib
from kerasnas.cli import search
from kerasnas.errors import SettingError
from kerasnas.search_spaces.cell import CellSpace
from kerasnas.trainers.base import LoopConfig, cosine, cosine_at, linear, linear_at
from kerasnas.trainers.retrain import RetrainConfig, RetrainTrainer
from kerasnas.trainers.snas import SNASConfig, SNASTrainer


@pytest.fixture(scope="module")
def digits():
    tf.config.experimental.enable_op_determinism()
    return data_lib.load("digits", seed=0, max_examples=256)


def _dense(bundle):
    keras.utils.set_random_seed(0)
    inputs = keras.Input(bundle.input_shape)
    return keras.Model(
        inputs, keras.layers.Dense(bundle.num_classes)(keras.layers.Flatten()(inputs))
    )


def _config(**kw):
    base = {"epochs": 100, "batch_size": 64, "drop_path": 0.0, "seed": 0, "time_budget": 40.0}
    return RetrainConfig(**{**base, **kw})


class FakeClock:
    """The loop's clock: only what the test advances (a step, say) takes time."""

    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def _timed(trainer, step_seconds=1.0, on_step=None, warm=True):
    """Gives `trainer` a fake clock that each step advances by `step_seconds`; `on_step(n)`
    is called before step n (1-based). With `warm`, the process counts as started (the
    first step is not start-up; see test_start_up_is_measured_not_counted). Returns the
    clock and the per-step learning rates."""
    clock = FakeClock()
    trainer.clock = clock
    if warm:
        trainer._started.add("train_step")
    compiled = tf.function(trainer.train_step, input_signature=trainer.step_signature())
    rates = []

    def step(*batch):
        if on_step is not None:
            on_step(len(rates) + 1)
        rates.append(trainer.w_opt.learning_rate)
        clock.t += step_seconds
        return compiled(*batch)

    trainer._step_fn = step
    return clock, rates


def test_schedule_functions_reach_their_ends():
    assert cosine_at(0.0, 0.025, 0.001) == pytest.approx(0.025)
    assert cosine_at(1.0, 0.025, 0.001) == pytest.approx(0.001)
    assert cosine_at(0.5, 0.025, 0.001) == pytest.approx(0.013)
    assert cosine_at(1.7, 0.025, 0.001) == pytest.approx(0.001)  # clipped, not past the end
    assert linear_at(0.0, 1.0, 0.03) == 1.0 and linear_at(1.0, 1.0, 0.03) == pytest.approx(0.03)
    assert linear_at(0.25, 1.0, 0.0) == pytest.approx(0.75)
    # the epoch-indexed ones are what they were
    assert cosine(3, 10, 0.025, 0.001) == 0.001 + 0.024 * (1 + math.cos(math.pi * 0.3)) / 2
    assert linear(9, 10, 1.0, 0.03) == pytest.approx(0.03)


def test_the_budget_stops_the_run_after_the_step_that_spends_it(digits):
    trainer = RetrainTrainer(_dense(digits), _config(time_budget=10.0), verbose=0)
    _timed(trainer)
    steps = trainer.steps_per_epoch(digits)
    history = trainer.fit(digits)
    assert steps < 10  # the budget ends in a later epoch, in its middle
    assert sum(r["steps"] for r in history) == 10 and trainer.steps_done == 10
    assert len(history) == math.ceil(10 / steps) < trainer.config.epochs
    assert [r["steps"] for r in history[:-1]] == [steps] * (len(history) - 1)
    assert history[-1]["budget_seconds"] == pytest.approx(10.0)
    assert history[-1]["budget_fraction"] == pytest.approx(1.0)
    assert "valid_acc" in history[-1]  # the short last epoch is still validated
    summary = trainer.budget_summary()
    assert summary["epochs_done"] == len(history) and summary["steps"] == 10
    assert summary["stopped_by"] == "time_budget" and summary["time_budget"] == 10.0


def test_start_up_is_measured_not_counted(digits):
    trainer = RetrainTrainer(_dense(digits), _config(time_budget=10.0), verbose=0)
    clock, _ = _timed(trainer, warm=False)

    def trace(n):
        if n == 1:
            clock.t += 29.0  # the first call traces and optimises the graph: 30 s

    trainer._step_fn = _with_hook(trainer._step_fn, trace)
    history = trainer.fit(digits)
    # the first step is start-up; then 10 steps of 1 s spend the budget
    assert trainer.steps_done == 11
    assert trainer.setup_seconds == pytest.approx(30.0)
    assert history[0]["setup_seconds"] == pytest.approx(30.0)
    assert history[-1]["budget_seconds"] == pytest.approx(10.0)
    assert trainer.budget_summary()["setup_seconds"] == pytest.approx(30.0)
    assert trainer.seconds >= 40.0
    # a second fit in the same process has nothing more to start up
    trainer.config.time_budget = 15.0
    trainer._step_fn = _with_hook(trainer._step_fn, trace)
    trainer.fit(digits)
    assert trainer.setup_seconds == pytest.approx(30.0)


def _with_hook(step, hook):
    calls = [0]

    def hooked(*batch):
        calls[0] += 1
        hook(calls[0])
        return step(*batch)

    return hooked


def test_epochs_stay_an_upper_bound(digits):
    trainer = RetrainTrainer(_dense(digits), _config(epochs=2, time_budget=1e6), verbose=0)
    _timed(trainer)
    history = trainer.fit(digits)
    assert len(history) == 2 and trainer.budget_summary()["stopped_by"] == "epochs"


def test_what_counts_epoch_end_work_yes_validation_no(digits):
    class WithEpochEnd(RetrainTrainer):
        def on_epoch_end(self, data, epoch):
            self.clock.t += 5.0  # search work after the steps (as ENAS' controller phase)
            return {}

        def evaluate(self, dataset):
            self.clock.t += 100.0  # measurement only
            return 0.5

    trainer = WithEpochEnd(_dense(digits), _config(time_budget=12.0), verbose=0)
    _timed(trainer)
    steps = trainer.steps_per_epoch(digits)
    history = trainer.fit(digits)
    # per epoch: `steps` seconds of steps + 5 of epoch-end work; validation not counted
    spent = [r["budget_seconds"] for r in history]
    assert spent[0] == pytest.approx(steps + 5.0)
    assert all(b - a <= steps + 5.0 + 1e-9 for a, b in zip([0.0, *spent], spent, strict=False))
    # overshoot: at most one step plus the epoch-end work
    assert 12.0 <= spent[-1] <= 12.0 + 1.0 + 5.0
    assert history[-1]["seconds"] == pytest.approx(spent[-1] + 100.0 * len(history))


def test_learning_rate_follows_the_budget_to_its_end(digits):
    trainer = RetrainTrainer(_dense(digits), _config(time_budget=40.0), verbose=0)
    _, rates = _timed(trainer)
    history = trainer.fit(digits)
    cfg = trainer.config
    assert len(rates) == 40
    # set before every step from the fraction spent: step k (0-based) starts at k/40
    assert rates == pytest.approx([cosine_at(k / 40, cfg.w_lr, cfg.w_lr_min) for k in range(40)])
    assert rates[0] == pytest.approx(cfg.w_lr)
    assert rates[-1] - cfg.w_lr_min < 0.002 * (cfg.w_lr - cfg.w_lr_min)
    assert history[-1]["w_lr"] == pytest.approx(rates[-1])  # the record: the last step's


def test_the_epoch_budget_keeps_one_rate_per_epoch_and_its_records(digits):
    trainer = RetrainTrainer(_dense(digits), _config(epochs=3, time_budget=None), verbose=0)
    _, rates = _timed(trainer)
    history = trainer.fit(digits)
    steps = trainer.steps_per_epoch(digits)
    cfg = trainer.config
    expected = [cosine(e, 3, cfg.w_lr, cfg.w_lr_min) for e in range(3) for _ in range(steps)]
    assert rates == pytest.approx(expected)
    for record in history:  # no budget fields in an epoch-budget history
        assert not {"steps", "budget_seconds", "budget_fraction"} & set(record)
    assert trainer.budget_summary()["steps"] == 3 * steps
    assert trainer.budget_summary()["stopped_by"] == "epochs"


def test_resume_restores_the_seconds_spent(digits, tmp_path):
    class Stop(Exception):
        pass

    steps = RetrainTrainer(_dense(digits), _config(), verbose=0).steps_per_epoch(digits)
    stop_at = 3 * steps + 2  # killed inside epoch 4, after epoch 3's checkpoint

    def kill(n):
        if n == stop_at:
            raise Stop

    first = RetrainTrainer(_dense(digits), _config(), str(tmp_path), verbose=0)
    _timed(first, on_step=kill)
    with pytest.raises(Stop):
        first.fit(digits)
    state = json.loads((tmp_path / "checkpoints" / "state.json").read_text())
    assert state["epochs_done"] == 3 and state["budget_seconds"] == pytest.approx(3 * steps)

    second = RetrainTrainer(_dense(digits), _config(), str(tmp_path), verbose=0)
    _, rates = _timed(second)
    history = second.fit(digits, resume=True)
    cfg = second.config
    # the rest of the budget: the lost part of epoch 4 is redone, not counted
    assert len(rates) == 40 - 3 * steps and second.steps_done == 40
    assert rates[0] == pytest.approx(cosine_at(3 * steps / 40, cfg.w_lr, cfg.w_lr_min))
    assert [r["epoch"] for r in history] == list(range(1, len(history) + 1))
    assert history[-1]["budget_seconds"] == pytest.approx(40.0)
    # a finished time-budgeted run resumes to nothing more
    third = RetrainTrainer(_dense(digits), _config(), str(tmp_path), verbose=0)
    _, rates = _timed(third)
    assert len(third.fit(digits, resume=True)) == len(history) and rates == []
    # another budget is another run
    with pytest.raises(SettingError, match="time_budget"):
        RetrainTrainer(_dense(digits), _config(time_budget=50.0), str(tmp_path), verbose=0).fit(
            digits, resume=True
        )


def test_a_real_clock_stops_near_the_budget(digits):
    trainer = RetrainTrainer(_dense(digits), _config(epochs=10_000, time_budget=1.5), verbose=0)
    compiled = tf.function(trainer.train_step, input_signature=trainer.step_signature())
    longest = [0.0]  # the longest step, tracing included

    def step(*batch):
        t = time.perf_counter()
        out = compiled(*batch)
        longest[0] = max(longest[0], time.perf_counter() - t)
        return out

    trainer._step_fn = step
    t0 = time.perf_counter()
    history = trainer.fit(digits)
    wall = time.perf_counter() - t0
    spent = trainer.budget_seconds
    assert 1 < len(history) < 10_000 and trainer.budget_summary()["stopped_by"] == "time_budget"
    # the overshoot: one step at most (plus the loop's own bits)
    assert 1.5 <= spent < 1.5 + longest[0] + 0.5
    assert history[-1]["budget_seconds"] == pytest.approx(spent)
    assert trainer.seconds >= spent and wall >= spent


@pytest.mark.slow
def test_snas_temperature_anneals_over_the_budget(digits):
    keras.utils.set_random_seed(0)
    space = CellSpace(
        digits.input_shape,
        digits.num_classes,
        init_channels=4,
        layers=3,
        nodes=2,
        ops=("none", "skip_connect", "max_pool_3x3"),
    )
    net = space.build_supernet("gumbel", digits.normalization_layer(), seed=0)
    cfg = SNASConfig(epochs=100, batch_size=64, seed=0, time_budget=20.0)
    trainer = SNASTrainer(net, cfg, verbose=0)
    owner = trainer.mixed[0].owner()
    temperatures = []
    _timed(trainer, on_step=lambda n: temperatures.append(float(owner.temperature.numpy())))
    history = trainer.fit(digits)
    assert temperatures == pytest.approx(
        [linear_at(k / 20, cfg.temperature_start, cfg.temperature_end) for k in range(20)]
    )
    assert history[-1]["temperature"] == pytest.approx(temperatures[-1])
    # injected fractions: the ends of the schedule
    trainer.set_schedules(0, 1.0)
    assert float(owner.temperature.numpy()) == pytest.approx(cfg.temperature_end)
    assert trainer.w_opt.learning_rate == pytest.approx(cfg.w_lr_min)
    # the epoch budget: what it was, by epoch
    assert trainer.set_schedules(99, None)["temperature"] == pytest.approx(cfg.temperature_end)
    assert trainer.set_schedules(0, None)["temperature"] == pytest.approx(cfg.temperature_start)


def test_drop_path_follows_the_budget():
    trainer = object.__new__(RetrainTrainer)
    trainer.config = RetrainConfig(epochs=10, drop_path=0.2, time_budget=60.0)
    assert trainer.drop_rate(3, 1.0) == pytest.approx(0.2)
    assert trainer.drop_rate(3, 0.5) == pytest.approx(0.1)
    assert trainer.drop_rate(5, None) == pytest.approx(0.1)  # epoch budget: 0.2 * 5 / 10


@pytest.mark.parametrize("value", [0, -3.0, float("nan")])
def test_bad_time_budget_names_the_setting(value):
    with pytest.raises(SettingError, match="time_budget"):
        LoopConfig(time_budget=value).validate()


def test_search_flag_error_names_the_flag(tmp_path, capsys):
    out = tmp_path / "never"
    code = search.main(["kerasnas-search", f"--output_dir={out}", "--time_budget=-5"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--time_budget must be > 0" in err[0]
    assert not out.exists()


def test_multi_worker_refuses_a_time_budget():
    """Each worker would time its own budget and stop after other steps than the rest."""
    from kerasnas.jobs.one_shot import OneShotSettings, default_config

    settings = OneShotSettings(
        output_dir="x",
        distribution="multi_worker",
        config=default_config("snas", time_budget=60.0),
    )
    with pytest.raises(SettingError, match=r"config\.time_budget.*multi_worker"):
        settings.validate()
    settings.config.time_budget = None
    settings.validate()
