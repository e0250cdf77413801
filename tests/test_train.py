"""Retraining from scratch: RetrainTrainer, cutout, kerasnas-train end to end, bad input."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import kerasnas
from kerasnas import data as data_lib
from kerasnas.augment import cutout
from kerasnas.cli import train
from kerasnas.genotype import DARTS_V2
from kerasnas.jobs import retrain as retrain_job
from kerasnas.trainers import RetrainConfig, RetrainTrainer
from kerasnas.trainers.retrain import copy_weights, drop_path_layers

TINY = ["--init_channels=4", "--layers=3", "--batch_size=64", "--verbose=0"]
ENV = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}


@pytest.fixture(scope="module")
def digits():
    tf.config.experimental.enable_op_determinism()
    return data_lib.load("digits", seed=0)


@pytest.fixture(scope="module")
def few_digits():
    tf.config.experimental.enable_op_determinism()
    return data_lib.load("digits", seed=0, max_examples=128)


def _network(bundle, auxiliary=True, drop_path=0.2):
    keras.utils.set_random_seed(0)
    return kerasnas.build_network(
        DARTS_V2,
        bundle.num_classes,
        bundle.input_shape,
        init_channels=4,
        layers=3,
        auxiliary=auxiliary,
        drop_path=drop_path,
        preprocessing=retrain_job._preprocessing(bundle),
    )


def _config(**kw):
    return RetrainConfig(**{"epochs": 2, "batch_size": 64, "cutout": 3, "seed": 0, **kw})


def _weights(model):
    return [keras.ops.convert_to_numpy(v).copy() for v in model.weights]


@pytest.mark.slow
def test_training_learns_with_auxiliary_head_drop_path_and_cutout(digits):
    net = _network(digits)
    trainer = RetrainTrainer(net, _config(), verbose=0)
    assert trainer.auxiliary and len(trainer.drop_layers) > 0
    history = trainer.fit(digits)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["valid_acc"] > 0.3  # chance: 0.1
    # the auxiliary head's loss is trained and logged; drop-path ramps as in DARTS
    assert all(r["aux_loss"] > 0 for r in history)
    assert [r["drop_path"] for r in history] == pytest.approx([0.0, 0.1])
    rate = keras.ops.convert_to_numpy(trainer.drop_layers[0].rate)
    assert rate == pytest.approx(0.1)
    # DropPath is live in training mode (outputs vary) and the identity at inference
    x, _ = digits.numpy("valid", limit=32)
    a, b = (keras.ops.convert_to_numpy(net(x, training=True)[0]) for _ in range(2))
    assert np.abs(a - b).max() > 0
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(net(x, training=False)[0]),
        keras.ops.convert_to_numpy(net(x, training=False)[0]),
    )

    # the inference copy: no auxiliary head, no DropPath, the same outputs
    clean = _network(digits, auxiliary=False, drop_path=0.0)
    copy_weights(net, clean)
    assert not drop_path_layers(clean)
    assert not [layer for layer in clean.layers if layer.name.startswith("aux_")]
    assert len(clean.outputs) == 1
    x, _ = digits.numpy("test")
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(net(x, training=False)[0]),
        keras.ops.convert_to_numpy(clean(x, training=False)),
    )


@pytest.mark.slow
def test_resume_equals_uninterrupted(few_digits, tmp_path):
    """With drop-path and cutout (the random parts); the auxiliary head is left out for speed."""
    digits = few_digits

    def network():
        return _network(digits, auxiliary=False)

    net_a = network()
    RetrainTrainer(net_a, _config(), str(tmp_path / "a"), verbose=0).fit(digits)

    class Stop(Exception):
        pass

    class Interrupted(RetrainTrainer):
        def checkpoint(self, epochs_done):
            super().checkpoint(epochs_done)
            if epochs_done == 1:
                raise Stop  # as if the process were killed after epoch 1's checkpoint

    with pytest.raises(Stop):
        Interrupted(network(), _config(), str(tmp_path / "b"), verbose=0).fit(digits)
    net_c = network()
    history = RetrainTrainer(net_c, _config(), str(tmp_path / "b"), verbose=0).fit(
        digits, resume=True
    )
    assert [r["epoch"] for r in history] == [1, 2]
    for wa, wc in zip(_weights(net_a), _weights(net_c), strict=True):
        np.testing.assert_array_equal(wa, wc)
    state_a = json.loads((tmp_path / "a" / "checkpoints" / "state.json").read_text())
    state_c = json.loads((tmp_path / "b" / "checkpoints" / "state.json").read_text())
    for ra, rc in zip(state_a["history"], state_c["history"], strict=True):
        assert {k: v for k, v in ra.items() if k != "seconds"} == {
            k: v for k, v in rc.items() if k != "seconds"
        }
    with pytest.raises(ValueError, match="other settings.*cutout"):
        RetrainTrainer(network(), _config(cutout=0), str(tmp_path / "b"), verbose=0).fit(
            digits, resume=True
        )


def test_drop_path_needs_droppath_layers(digits):
    with pytest.raises(ValueError, match="no DropPath"):
        RetrainTrainer(_network(digits, drop_path=0.0), _config(drop_path=0.2))


@pytest.mark.parametrize(
    "field, value", [("drop_path", 1.0), ("cutout", -1), ("auxiliary_weight", -0.1)]
)
def test_config_errors_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        RetrainConfig(**{field: value}).validate()


def test_cutout_is_deterministic_and_fills_the_mean():
    x = tf.ones((4, 8, 8, 2))
    a = cutout(x, 4, [1, 2], fill=[0.0, 5.0]).numpy()
    np.testing.assert_array_equal(a, cutout(x, 4, [1, 2], fill=[0.0, 5.0]).numpy())
    assert not np.array_equal(a, cutout(x, 4, [1, 3], fill=[0.0, 5.0]).numpy())
    cut = a[..., 0] == 0
    assert np.array_equal(cut, a[..., 1] == 5)  # the same square in every channel
    assert np.all((cut.sum((1, 2)) >= 4) & (cut.sum((1, 2)) <= 16))  # clipped at borders
    assert cutout(x, 0, [1, 2]) is x


# -- kerasnas-train ---------------------------------------------------------------------------


def _main(*args):
    return train.main(["kerasnas-train", *args])


@pytest.fixture(scope="module")
def genotype_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("geno") / "genotype.json"
    DARTS_V2.save(path)
    return path


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, genotype_file):
    out = tmp_path_factory.mktemp("cli") / "run"
    code = _main(
        f"--genotype={genotype_file}", f"--output_dir={out}", "--epochs=1", "--auxiliary", *TINY
    )
    assert code == 0
    return out


@pytest.mark.slow
def test_cli_writes_the_output_contract(finished_run, genotype_file):
    out = finished_run
    for name in retrain_job.RESULT_FILES:
        assert (out / name).is_file(), name
    assert any((out / "tensorboard").iterdir())
    assert len(list((out / "checkpoints").glob("ckpt-*.npz"))) == 1
    assert not [p for p in os.listdir(out) if ".tmp" in p]
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("test_accuracy", "valid_accuracy", "params", "flops", "seconds", "settings"):
        assert key in metrics, key
    assert metrics["epochs"] == 1 and metrics["seed"] == 0 and metrics["params"] > 0
    history = json.loads((out / "history.json").read_text())
    assert len(history) == 1 and "aux_loss" in history[0]
    assert json.loads((out / "genotype.json").read_text()) == json.loads(genotype_file.read_text())


@pytest.mark.slow
def test_model_keras_loads_clean_and_reproduces_test_accuracy(finished_run):
    model = keras.models.load_model(finished_run / "model.keras")
    assert not drop_path_layers(model)
    assert not [layer for layer in model.layers if layer.name.startswith("aux_")]
    metrics = json.loads((finished_run / "metrics.json").read_text())
    x, y = data_lib.load("digits", seed=0).numpy("test")  # raw images
    acc = float(np.mean(np.argmax(model.predict(x, verbose=0), -1) == y))
    assert acc == pytest.approx(metrics["test_accuracy"], abs=1e-9)


@pytest.mark.slow
def test_cli_refuses_a_used_dir_and_resumes_a_finished_run(finished_run, genotype_file, capsys):
    before = (finished_run / "metrics.json").read_text()
    args = [f"--genotype={genotype_file}", f"--output_dir={finished_run}", "--epochs=1", *TINY]
    assert _main(*args, "--auxiliary") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--output_dir" in err[0] and err[0].startswith("kerasnas-train:")
    assert (finished_run / "metrics.json").read_text() == before
    assert _main(*args) == 2  # --resume without --auxiliary: other settings
    assert "--resume" in capsys.readouterr().err
    assert _main(*args, "--auxiliary", "--resume") == 0
    new = json.loads((finished_run / "metrics.json").read_text())
    assert new["test_accuracy"] == json.loads(before)["test_accuracy"]


@pytest.mark.parametrize(
    "flag, value, needle",
    [
        ("genotype", "{missing}", "--genotype"),
        ("genotype", "{corrupt}", "corrupt.json"),
        ("genotype", "{badop}", "unknown op"),
        ("dataset", "mnist", "--dataset"),
        ("dataset", "npz:/nonexistent.npz", "nonexistent.npz"),
        ("epochs", "0", "--epochs"),
    ],
)
def test_cli_bad_input_one_line_and_nothing_written(
    tmp_path, genotype_file, capsys, flag, value, needle
):
    (tmp_path / "corrupt.json").write_text('{"normal": [[["sep_conv_3x3", 0]')
    bad = json.loads(genotype_file.read_text())
    bad["normal"][0][0][0] = "conv_9x9"
    (tmp_path / "badop.json").write_text(json.dumps(bad))
    value = value.format(
        missing=tmp_path / "missing.json",
        corrupt=tmp_path / "corrupt.json",
        badop=tmp_path / "badop.json",
    )
    args = {"genotype": str(genotype_file), "output_dir": str(tmp_path / "out"), flag: value}
    code = _main(*(f"--{k}={v}" for k, v in args.items()), *TINY)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("kerasnas-train: error:"), err
    assert needle in err[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_console_entry_point_exit_code(tmp_path):
    out = tmp_path / "o"
    proc = subprocess.run(
        [sys.executable, "-m", "kerasnas.cli.train", "--genotype=DARTS_V9", f"--output_dir={out}"],
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("kerasnas-train: error: --genotype")
    assert not out.exists()


def test_helpfull_lists_the_flags(capsys):
    assert _main("--helpfull") == 0
    text = capsys.readouterr().out
    for flag in ("genotype", "cutout", "drop_path", "auxiliary_weight", "resume", "overwrite"):
        assert flag in text


def test_published_genotype_by_name():
    assert retrain_job.load_genotype("DARTS_V2") is DARTS_V2


def test_flags_do_not_clash_with_kerasnas_search():
    from kerasnas.cli import search  # defines absl's global flags; ours are private

    assert search.FLAGS is not train.FLAGS
