"""kerasnas-search end to end: output contract, resume, clear errors on bad input."""

import json
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

import kerasnas
from kerasnas import data as data_lib
from kerasnas.errors import SettingError
from kerasnas.genotype import Genotype
from kerasnas.jobs.one_shot import OneShotSettings, run_search
from kerasnas.trainers.snas import SNASConfig

SMALL = [
    "--epochs=2",
    "--init_channels=4",
    "--layers=3",
    "--nodes=2",
    "--ops=none,skip_connect,max_pool_3x3,sep_conv_3x3",
    "--verbose=0",
]
ENV = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}


def _cli(*args, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "kerasnas.cli.search", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ENV,
    )


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    # with the default verbosity: stdout is a pipe here, so the progress is plain lines
    proc = _cli(f"--output_dir={out}", *[a for a in SMALL if not a.startswith("--verbose")])
    assert proc.returncode == 0, proc.stderr[-3000:]
    (out.parent / "stdout.log").write_text(proc.stdout)
    return out


@pytest.mark.slow
def test_cli_writes_the_output_contract(finished_run):
    out = finished_run
    for name in ("genotype.json", "metrics.json", "child.keras", "cells.png", "history.json"):
        assert (out / name).is_file(), name
    assert any((out / "tensorboard").iterdir())
    assert len(list((out / "checkpoints").glob("ckpt-*.npz"))) == 1
    assert not [p for p in os.listdir(out) if ".tmp" in p]  # no temp files left behind
    metrics = json.loads((out / "metrics.json").read_text())
    for key in (
        "supernet_valid_accuracy",
        "child_valid_accuracy",
        "child_test_accuracy",
        "child_params",
        "child_flops",
        "search_seconds",
        "epochs",
        "seed",
    ):
        assert key in metrics, key
    assert metrics["epochs"] == 2 and metrics["seed"] == 0
    assert (out / "cells.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    genotype = Genotype.load(out / "genotype.json")
    assert len(genotype.normal) == 2


@pytest.mark.slow
def test_the_log_is_plain_lines_named_as_history_json_and_ends_with_the_summary(finished_run):
    log = (finished_run.parent / "stdout.log").read_text()
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", log)  # no \r, no escape codes
    assert len(log.encode()) < 20_000
    history = json.loads((finished_run / "history.json").read_text())
    metrics = json.loads((finished_run / "metrics.json").read_text())
    lines = log.splitlines()
    assert any(line.startswith("compiling the search step (") for line in lines)
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in epochs] == ["epoch 1/2", "epoch 2/2"]
    for line, record in zip(epochs, history, strict=True):
        for key in ("train_loss", "sampled_supernet_valid_acc", "temperature"):
            assert re.search(rf"\b{key} ", line), key
        assert f"train_acc {record['train_acc']:.4f}" in line
        assert f"sampled_supernet_valid_acc {record['sampled_supernet_valid_acc']:.4f}" in line
    # the argmax child at the last epoch: what the search returns, before recalibration
    assert "argmax_child_valid_acc" in history[-1] and "argmax_child_valid_acc" not in history[0]
    assert f"argmax_child_valid_acc {history[-1]['argmax_child_valid_acc']:.4f}" in epochs[-1]
    summary = log[log.index("summary: snas search") :]
    assert (
        f"valid {metrics['child_valid_accuracy']:.4f}, test {metrics['child_test_accuracy']:.4f}"
        in summary
    )
    assert f"valid {metrics['supernet_valid_accuracy']:.4f}" in summary
    assert f"{metrics['child_params']:,} params, {metrics['child_flops']:,} mult-adds" in summary
    int8 = metrics["export"]["tflite_int8"]
    assert f"tflite_int8: {int8['size_bytes']:,} bytes" in summary
    assert f"kerasnas-train --genotype={finished_run / 'genotype.json'}" in summary


@pytest.mark.slow
def test_search_ends_with_verified_tflite_files(finished_run):
    """The default --export: float and int8 TFLite of the child, checked against it."""
    report = json.loads((finished_run / "export" / "export_report.json").read_text())
    assert report["passed"] is True and set(report["formats"]) == {"tflite", "tflite_int8"}
    assert report["formats"]["tflite"]["max_abs_diff"] < 1e-4
    assert report["keras_accuracy"] - report["formats"]["tflite_int8"]["accuracy"] <= 0.02
    for entry in report["formats"].values():
        assert (finished_run / "export" / entry["file"]).stat().st_size == entry["size_bytes"]
    metrics = json.loads((finished_run / "metrics.json").read_text())
    assert report["keras_accuracy"] == pytest.approx(metrics["child_test_accuracy"], abs=1e-9)
    assert metrics["export"]["tflite_int8"]["passed"] is True


@pytest.mark.slow
def test_child_keras_loads_and_reproduces_reported_accuracy(finished_run):
    child = keras.models.load_model(finished_run / "child.keras")
    assert not kerasnas.mixed_ops(child)
    metrics = json.loads((finished_run / "metrics.json").read_text())
    bundle = data_lib.load("digits", seed=0)
    x, y = bundle.numpy("test")  # raw images: preprocessing is inside the model
    acc = float(np.mean(np.argmax(child.predict(x, verbose=0), -1) == y))
    assert acc == pytest.approx(metrics["child_test_accuracy"], abs=1e-9)


@pytest.mark.slow
def test_resume_of_a_finished_run_keeps_its_result(finished_run):
    before = (finished_run / "genotype.json").read_text()
    proc = _cli(f"--output_dir={finished_run}", "--resume", *SMALL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (finished_run / "genotype.json").read_text() == before


@pytest.mark.slow
def test_non_empty_output_dir_without_resume_is_refused(finished_run):
    proc = _cli(f"--output_dir={finished_run}", *SMALL)
    assert proc.returncode != 0
    assert "--resume" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_resume_with_other_settings_is_refused(finished_run):
    args = [a for a in SMALL if not a.startswith("--epochs")]
    proc = _cli(f"--output_dir={finished_run}", "--resume", "--epochs=3", *args)
    assert proc.returncode != 0
    assert "epochs" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "flag, expected",
    [
        # the fast subset's one run of the real command (a process starts TensorFlow: ~6 s)
        ("--ops=sep_conv_9x9", "--ops"),
        pytest.param("--relaxation=hardest", "--relaxation", marks=pytest.mark.slow),
        pytest.param("--layers=2", "--layers", marks=pytest.mark.slow),
        pytest.param("--resource=watts", "--resource", marks=pytest.mark.slow),
        pytest.param("--export=tflite,onnx", "--export", marks=pytest.mark.slow),
    ],
)
def test_bad_flags_fail_with_one_clear_line(tmp_path, flag, expected):
    out = tmp_path / "never"
    proc = _cli(f"--output_dir={out}", flag, timeout=120)
    assert proc.returncode != 0
    assert expected in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()


@pytest.mark.slow
def test_missing_npz_dataset_names_the_file_and_writes_nothing(tmp_path):
    out = tmp_path / "never"
    proc = _cli(f"--output_dir={out}", f"--dataset=npz:{tmp_path}/nope.npz", timeout=120)
    assert proc.returncode == 2
    assert "nope.npz" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()


@pytest.mark.slow
def test_run_search_python_api_top2(tmp_path):
    settings = OneShotSettings(
        output_dir=str(tmp_path / "top2"),
        init_channels=4,
        layers=3,
        nodes=2,
        ops=("none", "skip_connect", "sep_conv_3x3"),
        derive="top2",
        verbose=0,
        export=(),
        config=SNASConfig(epochs=1),
    )
    metrics = run_search(settings)
    genotype = Genotype.load(tmp_path / "top2" / "genotype.json")
    assert all(len(node) == 2 for node in genotype.normal + genotype.reduce)
    assert all(
        op != "none"
        for op, _ in genotype.edges("normal") and [(e[2], e[0]) for e in genotype.edges("normal")]
    )
    assert metrics["derive"] == "top2"
    with pytest.raises(SettingError, match="derive"):
        run_search(OneShotSettings(output_dir=str(tmp_path / "x"), derive="top3"))


@pytest.mark.slow
def test_bfloat16_search_trains_a_mixed_supernet_and_writes_a_float32_child(tmp_path):
    settings = OneShotSettings(
        output_dir=str(tmp_path / "bf16"),
        init_channels=4,
        layers=3,
        nodes=2,
        ops=("none", "skip_connect", "sep_conv_3x3", "max_pool_3x3"),
        mixed_precision="bfloat16",
        verbose=0,
        export=("tflite",),
        config=SNASConfig(epochs=2, a_lr=0.2),
    )
    metrics = run_search(settings)
    assert keras.mixed_precision.global_policy().name == "float32"  # restored
    history = json.loads((tmp_path / "bf16" / "history.json").read_text())
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert np.isfinite(history[-1]["train_loss"])
    assert metrics["child_test_accuracy"] > 0.2  # 10 classes: above chance after 2 epochs
    child = keras.models.load_model(tmp_path / "bf16" / "child.keras")
    assert {layer.dtype_policy.name for layer in child.layers} == {"float32"}
    assert metrics["export"]["tflite"]["passed"]
    with pytest.raises(SettingError, match="loss scaling"):
        run_search(OneShotSettings(output_dir=str(tmp_path / "x"), mixed_precision="float16"))


def test_command_line_defaults_are_the_python_api_defaults():
    """One set of defaults: kerasnas-search with no flags == OneShotSettings()."""
    from kerasnas.cli import search

    search.FLAGS.unparse_flags()  # other tests run search.main in this process
    search.FLAGS(["kerasnas-search", "--output_dir=somewhere"], known_only=True)
    try:
        from_flags = search.settings_from_flags()
    finally:
        search.FLAGS.unparse_flags()
    assert from_flags == OneShotSettings(output_dir="somewhere")


def test_supernet_params_count_shared_variables_once():
    """Cells of a kind share their architecture logits: each variable is counted once."""
    import math

    from kerasnas.jobs.one_shot import trainable_params
    from kerasnas.search_spaces import CellSpace

    space = CellSpace((8, 8, 1), 10, init_channels=4, layers=3, nodes=2)
    net = space.build_supernet("gumbel", seed=0)
    unique = {id(v): v for layer in net.layers for v in layer.trainable_weights}
    assert trainable_params(net) == sum(math.prod(v.shape) for v in unique.values())
    naive = sum(math.prod(v.shape) for layer in net.layers for v in layer.trainable_weights)
    assert naive > trainable_params(net)


@pytest.mark.slow
def test_child_batch_norm_is_recalibrated_and_nothing_else_changes(tmp_path):
    """recalibrate_child: the same search with and without it writes the same genotype and
    child weights; only the child's batch-norm statistics differ (and they are recorded)."""
    from kerasnas.batchnorm import batch_norms

    def run(name, batches):
        settings = OneShotSettings(
            output_dir=str(tmp_path / name),
            init_channels=4,
            layers=3,
            nodes=2,
            ops=("none", "skip_connect", "sep_conv_3x3"),
            verbose=0,
            export=(),
            recalibrate_child=batches,
            config=SNASConfig(epochs=1, a_lr=0.2),
        )
        run_search(settings)
        return keras.models.load_model(tmp_path / name / "child.keras")

    plain, recalibrated = run("plain", 0), run("recal", 2)
    assert (tmp_path / "plain" / "genotype.json").read_text() == (
        tmp_path / "recal" / "genotype.json"
    ).read_text()
    for a, b in zip(plain.trainable_weights, recalibrated.trainable_weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    stats = [
        (bn.moving_mean.numpy(), other.moving_mean.numpy())
        for bn, other in zip(batch_norms(plain), batch_norms(recalibrated), strict=True)
    ]
    assert stats and any(np.abs(a - b).max() > 1e-4 for a, b in stats)
