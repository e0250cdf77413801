"""Progress output (kerasnas.progress), epoch-record names, TensorBoard tags and the end
summaries (kerasnas.summary). The loop tests time a tiny dense model with a fake clock, so
the times and ETAs they check are exact."""

import io
import json
import re
import sys

import keras
import pytest
import tensorflow as tf

from kerasnas import data as data_lib
from kerasnas import progress, summary
from kerasnas.progress import Progress, eta_seconds, format_duration
from kerasnas.trainers.retrain import RetrainConfig, RetrainTrainer

CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # every control character but \t and \n


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture(scope="module")
def digits():
    return data_lib.load("digits", seed=0, max_examples=256)


def _trainer(bundle, tmp_path=None, epochs=3, step_seconds=2.0, trace_seconds=50.0, **config):
    """A dense RetrainTrainer whose steps advance a fake clock by `step_seconds` (the first,
    which traces, by `trace_seconds`)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input(bundle.input_shape)
    model = keras.Model(
        inputs, keras.layers.Dense(bundle.num_classes)(keras.layers.Flatten()(inputs))
    )
    cfg = RetrainConfig(epochs=epochs, batch_size=64, drop_path=0.0, **config)
    trainer = RetrainTrainer(model, cfg, None if tmp_path is None else str(tmp_path), verbose=1)
    clock = FakeClock()
    trainer.clock = clock
    compiled = tf.function(trainer.train_step, input_signature=trainer.step_signature())
    calls = []

    def step(*batch):
        clock.t += trace_seconds if not calls else step_seconds
        calls.append(1)
        return compiled(*batch)

    trainer._step_fn = step
    return trainer


def test_plain_mode_is_one_line_per_epoch_without_control_characters(digits, capsys):
    # tracing longer than the plain mode's progress interval (300 s) is not progress
    trainer = _trainer(digits, epochs=3, trace_seconds=400.0)
    history = trainer.fit(digits)  # pytest's captured stdout is not a terminal
    out = capsys.readouterr().out
    assert not CONTROL.search(out)
    lines = out.splitlines()
    assert lines[0].startswith("compiling the training step (") and lines[0].endswith("...")
    assert lines[1] == "compiled the training step in 400 s"
    # the first validation pass traces its function too (no fake time)
    assert lines[2].startswith("compiling the validation pass (") and lines[2].endswith("...")
    assert lines[3] == "compiled the validation pass in 0 s"
    epochs = lines[4:]
    assert [line.split(":")[0] for line in epochs] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    # the line shows the record's figures under their names
    for line, record in zip(epochs, history, strict=True):
        assert f"train_loss {record['train_loss']:.4g}" in line
        assert f"train_acc {record['train_acc']:.4f}" in line
        assert f"valid_acc {record['valid_acc']:.4f}" in line
    # steps of 2 s; the traced step is start-up, not a step time: after epoch 1, two more
    # epochs of their steps at 2 s each (validation takes no fake time)
    steps = trainer.steps_per_epoch(digits)
    assert epochs[0].endswith(f"run ETA {4 * steps} s")
    assert epochs[1].endswith(f"run ETA {2 * steps} s")
    assert "ETA" not in epochs[2]


def test_verbose_2_is_plain_on_a_terminal_and_1_is_live(digits, monkeypatch):
    assert progress.choose_mode(0, Terminal()) is None
    assert progress.choose_mode(1, Terminal()) == "tty"
    assert progress.choose_mode(1, io.StringIO()) == "plain"
    assert progress.choose_mode(2, Terminal()) == "plain"
    terminal = Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    monkeypatch.setenv("COLUMNS", "100")  # the live line is cut to 99 characters
    trainer = _trainer(digits, epochs=2)
    trainer.fit(digits)
    out = terminal.getvalue()
    assert "\r" in out  # the live line
    steps = trainer.steps_per_epoch(digits)
    live = [p for p in out.split("\r") if p.startswith(f"epoch 1/2  step 2/{steps}")]
    assert live and "train_loss" in live[0] and "2.00 s/step" in live[0]
    # the steps left of this epoch, then the next epoch's
    left = 2 * (steps - 2)
    assert f"epoch ETA {left} s, run ETA {left + 2 * steps} s" in live[0]
    assert all(len(p.rstrip()) <= 99 for p in out.split("\r") if p.startswith("epoch 1/2  step"))
    # what stays on the screen: the compiling line with its time, one line per epoch
    shown = [line.split("\r")[-1].strip() for line in out.split("\n") if line.strip()]
    assert shown[0].startswith("compiling the training step") and shown[0].endswith("... 50 s")
    assert shown[1].startswith("compiling the validation pass") and shown[1].endswith("... 0 s")
    assert [line.split(":")[0] for line in shown[2:]] == ["epoch 1/2", "epoch 2/2"]


def test_eta_arithmetic():
    # 3 steps left, 2 more epochs of 10 steps at 0.5 s, 4 s after each epoch's steps
    assert eta_seconds(3, 2, 10, 0.5, 4.0) == pytest.approx(1.5 + 10 + 3 * 4.0)
    # a time budget that ends first: its seconds, and the end of each epoch it reaches
    # (7 s: this epoch's 1.5, the next one's 5 and 0.5 of the third: three epochs end)
    assert eta_seconds(3, 2, 10, 0.5, 4.0, budget_left=7.0) == pytest.approx(7 + 3 * 4.0)
    assert eta_seconds(3, 2, 10, 0.5, 4.0, budget_left=4.0) == pytest.approx(4 + 2 * 4.0)
    assert eta_seconds(3, 2, 10, 0.5, 4.0, budget_left=1.0) == pytest.approx(1 + 4.0)
    assert eta_seconds(3, 2, 10, 0.5, 4.0, budget_left=100.0) == eta_seconds(3, 2, 10, 0.5, 4.0)
    assert [format_duration(s) for s in (0, 59.4, 61, 3599, 3661, None)] == [
        "0 s",
        "59 s",
        "1:01",
        "59:59",
        "1:01:01",
        "?",
    ]


def test_eta_leaves_out_start_up_and_uses_the_time_budget():
    clock = FakeClock()
    p = Progress(epochs=10, steps_per_epoch=5, mode=None, time_budget=30.0, clock=clock)
    p.begin_epoch(0)
    clock.t += 60.0  # the traced first step
    p.step(1, {}, timed=False, budget_spent=0.0)
    assert p.eta() == (None, None)  # no step time yet
    for n in (2, 3):
        clock.t += 1.0
        p.step(n, {}, budget_spent=n - 1.0)
    assert p.step_seconds == pytest.approx(1.0)
    clock.t += 7.0
    p.exclude(6.0)  # start-up inside an interval (ENAS' controller, say) is not counted
    p.step(4, {}, budget_spent=3.0)
    assert p.step_seconds == pytest.approx(1.0)
    # 1 step left in the epoch; the budget (27 s left) ends before the 9 epochs do
    assert p.eta() == (pytest.approx(1.0), pytest.approx(27.0))


def test_plain_mode_shows_progress_inside_a_long_epoch():
    clock, stream = FakeClock(), io.StringIO()
    p = Progress(3, 100, "plain", stream=stream, clock=clock, plain_every=60.0)
    p.begin_epoch(0)
    for n in range(1, 101):
        clock.t += 1.0
        p.step(n, {"loss": 0.5, "accuracy": 0.75})
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 and not CONTROL.search(lines[0])
    assert lines[0] == (
        "  epoch 1/3  step 60/100  1.00 s/step  epoch ETA 40 s, run ETA 4:00  "
        "train_loss 0.5  train_acc 0.7500"
    )


def test_record_names_and_tensorboard_tags(digits, tmp_path):
    trainer = _trainer(digits, tmp_path, epochs=2)
    trainer.fit(digits)
    history = trainer.history
    assert {"train_loss", "train_acc", "valid_acc", "w_lr", "seconds"} <= set(history[0])
    assert not {"loss", "accuracy", "valid_accuracy"} & set(history[0])
    tags = {
        v.tag
        for f in (tmp_path / "tensorboard").iterdir()
        for e in tf.compat.v1.train.summary_iterator(str(f))
        for v in e.summary.value
    }
    assert {"train/loss", "train/acc", "valid/valid_acc", "schedule/w_lr", "time/seconds"} <= tags
    assert progress.tensorboard_tag("entropy") == "architecture/entropy_mean"
    assert progress.tensorboard_tag("entropy/cell_0_e1") == "architecture/entropy/cell_0_e1"
    assert progress.tensorboard_tag("prob/e1/sep_conv_3x3") == "architecture/prob/e1/sep_conv_3x3"
    assert progress.tensorboard_tag("temperature") == "schedule/temperature"
    assert progress.tensorboard_tag("sampled_supernet_valid_acc").startswith("valid/")
    assert progress.tensorboard_tag("reward") == "controller/reward"


def test_a_resumed_history_of_an_older_version_gets_the_new_names(digits, tmp_path):
    trainer = _trainer(digits, tmp_path, epochs=2)
    trainer.fit(digits)
    state_path = tmp_path / "checkpoints" / "state.json"
    state = json.loads(state_path.read_text())
    old = {"train_loss": "loss", "train_acc": "accuracy", "valid_acc": "valid_accuracy"}
    state["history"] = [{old.get(k, k): v for k, v in r.items()} for r in state["history"]]
    state_path.write_text(json.dumps(state))
    again = _trainer(digits, tmp_path, epochs=2)
    again.verbose = 0
    again.fit(digits, resume=True)  # nothing left to train: the history as restored
    assert again.history == trainer.history


METRICS = {
    "supernet_valid_accuracy": 0.80779,
    "supernet_test_accuracy": 0.79554,
    "child_valid_accuracy": 0.96100,
    "child_test_accuracy": 0.95265,
    "child_params": 49258,
    "child_flops": 1234567,
    "search_seconds": 301.4,
    "setup_seconds": 95.2,
    "budget_seconds": 190.3,
    "epochs_done": 30,
    "steps": 510,
    "epochs": 30,
    "strategy": "snas",
    "relaxation": "gumbel",
    "dataset": "digits",
    "export": {
        "tflite": {
            "file": "model.tflite",
            "size_bytes": 278652,
            "accuracy": 0.9666,
            "latency_ms": 0.0942,
            "passed": True,
        },
    },
}
GENOTYPE = {
    "normal": [[["sep_conv_3x3", 0], ["skip_connect", 1]], []],
    "normal_concat": [2, 3],
    "reduce": [[["max_pool_3x3", 0]], [["dil_conv_5x5", 2]]],
    "reduce_concat": [2, 3],
}


def test_the_search_summary_shows_the_figures_of_metrics_json(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    for name in ("genotype.json", "child.keras", "metrics.json"):
        (out / name).write_text("{}")
    text = summary.one_shot(METRICS, GENOTYPE, str(out), passes=5)
    assert not CONTROL.search(text)
    rows = dict(
        line.strip().split("  ", 1) for line in text.splitlines()[1:] if "  " in line.strip()
    )
    assert rows["architecture"].strip() == "normal: sep3x3(0)+skip(1) | -"
    assert "reduce: max3x3(0) | dil5x5(2)" in text
    assert "valid 0.8078, test 0.7955 (gumbel: sampled, mean of 5 passes)" in rows["supernet"]
    assert rows["child"].strip().startswith("valid 0.9610, test 0.9526")
    assert "49,258 params, 1,234,567 mult-adds per image" in rows["child size"]
    assert "tflite: 278,652 bytes, test accuracy 0.9666, 0.094 ms/image" in rows["exported"]
    assert rows["time"].strip() == (
        "301 s in the training loop: 190 s of training steps, 95 s compiling (once per run), "
        "16 s validation and checkpoints"
    )
    assert f"{out / 'child.keras'}" in text and "history.json" not in text  # what exists
    retrain = tmp_path / "retrain"
    assert f"kerasnas-train --genotype={out / 'genotype.json'} --output_dir={retrain}" in text
    assert "kerasnas-export" not in text  # already exported
    # every label starts at one column and every value at another
    starts = {len(line) - len(line.lstrip()) for line in text.splitlines()[1:]}
    assert starts == {2, 2 + len("architecture") + 2}


def test_the_retrain_and_export_summaries(tmp_path):
    metrics = {
        "valid_accuracy": 0.9944,
        "test_accuracy": 0.9916,
        "params": 268570,
        "flops": 2840000,
        "seconds": 87.0,
        "epochs_done": 20,
        "dataset": "digits",
        "final_train_accuracy": 0.9871,
        "genotype": GENOTYPE,
    }
    text = summary.retrain(metrics, str(tmp_path / "retrain"))
    assert "valid 0.9944, test 0.9916; train 0.9871" in text
    assert "268,570 params, 2,840,000 mult-adds" in text
    assert f"kerasnas-export --model={tmp_path / 'retrain' / 'model.keras'}" in text
    report = {
        "model": {"source": "run/child.keras", "params": 49258},
        "dataset": "digits",
        "eval_examples": 359,
        "keras_accuracy": 0.9666,
        "formats": {
            "tflite_int8": {
                "file": "model_int8.tflite",
                "size_bytes": 187880,
                "accuracy": 0.9610,
                "latency_ms": 0.193,
                "passed": True,
            },
        },
    }
    text = summary.export(report, "deploy")
    assert (
        "tflite_int8  deploy/model_int8.tflite  187,880 bytes, test accuracy 0.9610, "
        "0.193 ms/image, passed" in text
    )
    assert "Interpreter(model_path='deploy/model_int8.tflite')" in text


def test_the_trial_based_and_comparison_summaries(tmp_path):
    metrics = {
        "best_trial_id": "03",
        "best_reward": 0.9123,
        "best_valid_accuracy": 0.9123,
        "best_test_accuracy": 0.9001,
        "best_params": 12345,
        "best_flops": 67890,
        "best_architecture": {"layers": [{"filters": 16, "kernel": 3}]},
        "trials": 5,
        "trials_completed": 4,
        "trials_failed": 1,
        "search_seconds": 42.0,
        "strategy": "random",
        "search_space": "nasrl",
        "dataset": "digits",
    }
    text = summary.trial_based(metrics, str(tmp_path))
    assert "id 03: reward 0.9123, valid 0.9123, test 0.9001" in text
    assert '{"layers":[{"filters":16,"kernel":3}]}' in text
    assert "4 of 5 trials completed, 1 failed" in text
    assert f"kerasnas-export --model={tmp_path / 'best.keras'}" in text
    written = {
        "seconds": 1234.5,
        "budget": {"kind": "epochs", "epochs": 10},
        "strategies": {
            "snas": {
                "supernet_valid_accuracy": {"mean": 0.81, "std": 0.02, "n": 2},
                "child_valid_accuracy": {"mean": 0.95, "std": 0.01, "n": 2},
                "accuracy_drop": {"mean": -0.14, "std": 0.01, "n": 2},
                "retrained_test_accuracy": {"mean": 0.975, "std": 0.004, "n": 2},
                "epochs_done": {"mean": 10, "std": 0, "n": 2},
                "steps": {"mean": 170, "std": 0, "n": 2},
            }
        },
    }
    best = {"strategy": "snas", "seed": 1, "retrain_dir": "cmp/runs/snas_seed1/retrain"}
    text = summary.comparison(written, {"snas": "SNAS"}, best, "cmp")
    lines = text.splitlines()
    header = next(line for line in lines if "strategy" in line and "supernet" in line)
    row = next(line for line in lines if "SNAS" in line and "0.810" in line)
    assert row.index("0.810") == header.index("supernet")  # the columns line up
    assert "0.975 +- 0.004" in row and "-0.140" in row
    assert "10 supernet epochs per search" in text
    assert "kerasnas-export --model=cmp/runs/snas_seed1/retrain/model.keras" in text
