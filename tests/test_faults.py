"""Faults and bad input: torn or damaged checkpoints, a locked output directory, stale
temporary files, data that cannot train, a diverging loss, Ctrl-C and SIGTERM, filesystem
errors, an export that fails after the search, and every candidate op through TFLite."""

import csv
import errno
import json
import os
import signal
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasnas import data as data_lib
from kerasnas import io, ops
from kerasnas.cli import command, search
from kerasnas.errors import SettingError
from kerasnas.export import litert
from kerasnas.genotype import DARTS_V2
from kerasnas.trainers.base import CheckpointError, DivergedError
from kerasnas.trainers.retrain import RetrainConfig, RetrainTrainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": ROOT}


@pytest.fixture(scope="module")
def digits():
    tf.config.experimental.enable_op_determinism()
    return data_lib.load("digits", seed=0, max_examples=128)


def _dense(bundle):
    keras.utils.set_random_seed(0)
    inputs = keras.Input(bundle.input_shape)
    hidden = keras.layers.Dense(16, activation="relu")(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, keras.layers.Dense(bundle.num_classes)(hidden))


def _trainer(bundle, out, **kw):
    config = RetrainConfig(**{"epochs": 4, "batch_size": 32, "drop_path": 0.0, "seed": 0, **kw})
    return RetrainTrainer(_dense(bundle), config, str(out) if out else None, verbose=0)


def _weights(trainer):
    return [keras.ops.convert_to_numpy(v).copy() for v in trainer.model.weights]


class Killed(BaseException):
    """Stands for the process dying at an injected point (nothing after it runs)."""


# -- checkpoints --------------------------------------------------------------------------------
def test_a_stop_between_the_checkpoint_files_resumes_to_the_uninterrupted_result(
    digits, tmp_path, monkeypatch
):
    reference = _trainer(digits, tmp_path / "ref")
    reference.fit(digits)
    # die after epoch 3's arrays are in place, before its manifest (state.json) is written
    real = io.write_json
    calls = {"n": 0}

    def dying(path, obj):
        if str(path).endswith("state.json"):
            calls["n"] += 1
            if calls["n"] == 3:
                raise Killed
        return real(path, obj)

    monkeypatch.setattr(io, "write_json", dying)
    first = _trainer(digits, tmp_path / "run")
    with pytest.raises(Killed):
        first.fit(digits)
    monkeypatch.setattr(io, "write_json", real)
    state = json.loads((tmp_path / "run" / "checkpoints" / "state.json").read_text())
    assert state["epochs_done"] == 2
    second = _trainer(digits, tmp_path / "run")
    history = second.fit(digits, resume=True)
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    for a, b in zip(_weights(reference), _weights(second), strict=True):
        np.testing.assert_array_equal(a, b)
    # one array file is left: the manifest's
    assert sorted(os.listdir(tmp_path / "run" / "checkpoints")) == ["ckpt-00004.npz", "state.json"]


def test_a_damaged_or_replaced_checkpoint_is_refused_by_name(digits, tmp_path):
    trainer = _trainer(digits, tmp_path, epochs=2)
    trainer.fit(digits)
    ckpt = tmp_path / "checkpoints"
    state = json.loads((ckpt / "state.json").read_text())
    arrays = ckpt / state["arrays"]
    # a valid archive with the right shapes but other values: only the checksum tells
    with np.load(arrays) as npz:
        others = {k: npz[k] + 1 for k in npz.files}
    np.savez(arrays, **others)
    with pytest.raises(CheckpointError, match=r"ckpt-00002\.npz does not match the checksum"):
        _trainer(digits, tmp_path, epochs=3).fit(digits, resume=True)
    arrays.write_bytes(b"truncated")
    with pytest.raises(CheckpointError, match="checksum"):
        _trainer(digits, tmp_path, epochs=3).fit(digits, resume=True)
    arrays.unlink()
    with pytest.raises(CheckpointError, match=r"ckpt-00002\.npz, named by .*state\.json"):
        _trainer(digits, tmp_path, epochs=3).fit(digits, resume=True)
    (ckpt / "state.json").write_text('{"epochs_done": 2, "hist')
    with pytest.raises(CheckpointError, match=r"state\.json is unreadable"):
        _trainer(digits, tmp_path, epochs=3).fit(digits, resume=True)


def test_a_checkpoint_written_before_the_manifest_still_resumes(digits, tmp_path):
    trainer = _trainer(digits, tmp_path, epochs=2)
    trainer.fit(digits)
    ckpt = tmp_path / "checkpoints"
    state = json.loads((ckpt / "state.json").read_text())
    os.replace(ckpt / state.pop("arrays"), ckpt / "ckpt.npz")  # the old layout
    del state["sha256"]
    (ckpt / "state.json").write_text(json.dumps(state))
    resumed = _trainer(digits, tmp_path, epochs=2)
    assert resumed.restore() == 2
    for got, want in zip(_weights(resumed), _weights(trainer), strict=True):
        np.testing.assert_array_equal(got, want)


# -- the output directory -----------------------------------------------------------------------
def _hold_lock(path, how="lock_output_dir"):
    """A subprocess that locks `path` and waits; returns it once the lock is taken."""
    code = textwrap.dedent(
        f"""
        import sys, time
        from kerasnas import io
        io.{how}({str(path)!r})
        print("locked", flush=True)
        time.sleep(120)
        """
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code], env=ENV, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "locked"
    return holder


@pytest.mark.slow
def test_a_second_process_on_the_same_directory_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    holder = _hold_lock(out)
    try:
        with pytest.raises(io.OutputDirError, match=f"in use by pid {holder.pid} on "):
            io.prepare_output_dir(str(out))
        # the command line: one line, exit 2, nothing written
        code = search.main(["kerasnas-search", f"--output_dir={out}", "--epochs=1"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and f"pid {holder.pid}" in err[0], err
        assert sorted(os.listdir(out)) == [io.LOCK_FILE]
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone (killed): its lock went with it, nothing stale remains
    io.prepare_output_dir(str(out))
    io.release_output_dir(str(out))


@pytest.mark.slow
def test_an_export_target_is_locked_and_its_stale_staging_removed(tmp_path, digits):
    from kerasnas.export.exporter import export_model

    target = tmp_path / "deploy"
    stale = tmp_path / ".deploy.ab12cd34.tmp"  # a killed export's staging directory
    (stale / "model.tflite").parent.mkdir()
    other = tmp_path / ".deployment.ab12cd34.tmp"  # another target's: not touched
    other.mkdir()
    x, y = digits.numpy("test", 16)
    holder = _hold_lock(target, "lock_target")
    try:
        with pytest.raises(io.OutputDirError, match=f"in use by pid {holder.pid}"):
            export_model(_dense(digits), str(target), "tflite", x_eval=x, y_eval=y, log=id)
    finally:
        holder.kill()
        holder.wait()
    assert not target.exists()
    export_model(_dense(digits), str(target), "tflite", x_eval=x, y_eval=y, log=id)
    assert sorted(os.listdir(tmp_path)) == [".deployment.ab12cd34.tmp", "deploy"]


def test_stale_temporaries_are_removed_on_resume(tmp_path):
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    (out / "metrics.json").write_text("{}")
    stale = [
        out / ".child.keras.k2j4x_9a.tmp.keras",
        out / "checkpoints" / ".ckpt-00003.npz.ab12cd34.tmp.npz",
        out / ".export.x1y2z3w4.tmp",
        out / ".export.q1w2e3r4",  # the staging name before it had a suffix
    ]
    for path in stale[:2]:
        path.write_text("half")
    for path in stale[2:]:
        (path / "saved_model").mkdir(parents=True)
    io.prepare_output_dir(str(out), resume=True)
    io.release_output_dir(str(out))
    assert not any(p.exists() for p in stale)
    assert (out / "metrics.json").exists() and (out / "checkpoints").is_dir()


@pytest.mark.slow
def test_an_output_dir_below_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "run"
    code = search.main(["kerasnas-search", f"--output_dir={out}", "--epochs=1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "cannot write" in err[0] and str(out) in err[0], err


# -- data ----------------------------------------------------------------------------------------
def _npz(tmp_path, x, y, name="data.npz"):
    path = tmp_path / name
    np.savez(path, x=x, y=y)
    return f"npz:{path}"


def _images(n, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (n, 8, 8, 1)).astype(np.uint8)


@pytest.mark.parametrize(
    "x, y, message",
    [
        (np.zeros((0, 8, 8, 1), np.uint8), np.zeros(0, np.int64), "hold no examples"),
        (_images(40), np.r_[np.arange(40) % 4][:-1].tolist() + [1_000_000], "largest is 1000000"),
        (_images(40), np.full(40, 3), "one class only"),
        (np.full((40, 8, 8, 1), 7, np.uint8), np.arange(40) % 4, "every value of 'x' is 7"),
        (
            np.full((40, 8, 8, 1), 1e30, np.float32) * (np.arange(40) % 2)[:, None, None, None],
            np.arange(40) % 2,
            "overflows float32",
        ),
        (
            (np.random.default_rng(0).random((40, 8, 8, 1)) * 1e-9).astype(np.float32),
            np.arange(40) % 2,
            "vanish (underflow)",
        ),
    ],
    ids=["empty", "huge-label", "one-class", "constant", "overflow", "underflow"],
)
def test_data_that_cannot_train_is_refused_in_one_line(tmp_path, x, y, message):
    spec = _npz(tmp_path, x, np.asarray(y))
    with pytest.raises(data_lib.DataError) as info:
        data_lib.load(spec, seed=0)
    text = str(info.value)
    assert message in text and "\n" not in text and str(tmp_path) in text, text


def test_a_file_that_is_not_an_npz_is_named(tmp_path):
    path = tmp_path / "data.npz"
    path.write_bytes(b"not an archive" * 10)  # numpy would call it pickled data
    with pytest.raises(data_lib.DataError, match=r"data.npz' is not a \.npz archive"):
        data_lib.load(f"npz:{path}", seed=0)


def test_resume_and_overwrite_together_are_refused(tmp_path):
    with pytest.raises(io.OutputDirError, match=r"resume .*and overwrite .*exclude each other"):
        io.prepare_output_dir(str(tmp_path / "r"), resume=True, overwrite=True)
    assert not (tmp_path / "r").exists()


def test_values_far_from_zero_keep_their_spread(tmp_path):
    """The statistics are merged chunk by chunk around their means: the mean and standard
    deviation of values with a large offset match numpy's over the training split."""
    x = (1000 + np.random.default_rng(0).random((600, 8, 8, 1))).astype(np.float32)
    bundle = data_lib.load(_npz(tmp_path, x, np.arange(600) % 2), seed=0)
    train_x = bundle.numpy("train")[0]
    np.testing.assert_allclose(bundle.std, train_x.reshape(-1, 1).std(0), rtol=1e-3)
    np.testing.assert_allclose(bundle.mean, train_x.reshape(-1, 1).mean(0), rtol=1e-6)


def test_a_class_missing_from_the_training_split_is_named(tmp_path):
    y = np.r_[np.arange(39) % 3, 3]  # class 3 has one example: it lands in one split
    n_valid, n_test = data_lib._split_sizes(len(y), 0.2, 0.2, "x")
    seed = next(s for s in range(50) if 39 not in data_lib._split_indices(y, s, n_valid, n_test)[0])
    with pytest.raises(data_lib.DataError, match=r"class\(es\) 3 have no example in the train"):
        data_lib.load(_npz(tmp_path, _images(40), y), seed=seed)


def test_ops_none_alone_is_refused(tmp_path, capsys):
    code = search.main(["kerasnas-search", f"--output_dir={tmp_path / 'r'}", "--ops=none"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--ops must hold an op other than 'none'" in err[0]
    assert not (tmp_path / "r").exists()


# -- training health -----------------------------------------------------------------------------
def test_a_diverging_loss_stops_the_run_and_keeps_the_last_checkpoint(digits, tmp_path):
    class Poisoned(RetrainTrainer):
        """Turns weights to NaN during epoch 2, as a too-large learning rate does: the output
        layer's bias (a NaN in the first kernel can be squashed by the ReLU after it, which
        some CPU kernels compute as max(x, 0) = 0 for NaN)."""

        def on_epoch_begin(self, epoch):
            if epoch == 1:
                self.model.weights[-1].assign(np.full(self.model.weights[-1].shape, np.nan))
            return super().on_epoch_begin(epoch)

    config = RetrainConfig(epochs=4, batch_size=32, drop_path=0.0, seed=0)
    trainer = Poisoned(_dense(digits), config, str(tmp_path), verbose=0)
    with pytest.raises(
        DivergedError,
        match=r"nan at epoch 2, step 1: .*\(the checkpoint of epoch 1 is kept\).*w_lr",
    ) as info:
        trainer.fit(digits)
    assert info.value.exit_code == 1
    state = json.loads((tmp_path / "checkpoints" / "state.json").read_text())
    assert state["epochs_done"] == 1
    resumed = _trainer(digits, tmp_path, epochs=4)
    assert resumed.restore() == 1
    assert all(np.isfinite(w).all() for w in _weights(resumed))


@pytest.mark.parametrize("value", ["inf", "-inf", "nan"])
def test_numeric_flags_must_be_finite(tmp_path, capsys, value):
    code = search.main(["kerasnas-search", f"--output_dir={tmp_path / 'r'}", f"--w_lr={value}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--w_lr must be" in err[0], err


# -- stopping and failing ------------------------------------------------------------------------
def _command(tmp_path):
    cmd = command.Command("kerasnas-test", "test")
    cmd.define("string", "output_dir", str(tmp_path), "out")
    cmd.define("boolean", "resume", False, "resume")
    return cmd


def test_ctrl_c_and_sigterm_stop_with_one_line_and_their_exit_codes(tmp_path, capsys):
    def interrupted():
        raise KeyboardInterrupt

    def terminated():
        os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    assert _command(tmp_path).main(["kerasnas-test"], interrupted) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"kerasnas-test: stopped: interrupted; no checkpoint in {str(tmp_path)!r} yet: add "
        "--resume to start it again there"
    ]
    assert _command(tmp_path).main(["kerasnas-test"], terminated) == 143
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "terminated (SIGTERM)" in err[0]
    assert signal.getsignal(signal.SIGTERM) is before  # restored


def test_filesystem_errors_are_one_line_naming_the_file(tmp_path, capsys):
    def full():
        raise OSError(28, "No space left on device", str(tmp_path / "metrics.json"))

    assert _command(tmp_path).main(["kerasnas-test"], full) == 1
    err = capsys.readouterr().err.strip().splitlines()
    path = str(tmp_path / "metrics.json")
    assert err == [
        f"kerasnas-test: error: No space left on device: {path!r}; no checkpoint in "
        f"{str(tmp_path)!r} yet: add --resume to start it again there"
    ]


def test_a_write_that_fails_without_a_file_name_is_given_one(tmp_path):
    """write() on a full disk raises ENOSPC without a file name: atomic_path adds it, and
    leaves neither the temporary nor the target behind."""
    target = tmp_path / "ckpt.npz"
    with pytest.raises(OSError) as info:
        with io.atomic_path(target) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"half")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert os.listdir(tmp_path) == []


@pytest.mark.slow
def test_a_failed_export_keeps_the_search_and_exits_non_zero(tmp_path, capsys, monkeypatch):
    from kerasnas.jobs import base

    def broken(*args, **kwargs):
        raise litert.ConversionError(
            "TFLite conversion (float) failed: 'tf.Pad' op is neither a custom op nor a flex op"
        )

    monkeypatch.setattr(base, "export_summary", broken)
    out = tmp_path / "run"
    code = search.main(
        [
            "kerasnas-search",
            f"--output_dir={out}",
            "--epochs=1",
            "--init_channels=4",
            "--layers=3",
            "--nodes=2",
            "--ops=none,skip_connect,sep_conv_3x3",
            "--export=tflite",
            "--verbose=0",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 3 and len(err) == 1, err
    assert "the export failed: TFLite conversion (float) failed" in err[0]
    assert "kerasnas-export on" in err[0] and str(out / "child.keras") in err[0]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["export"] == {
        "error": "TFLite conversion (float) failed: 'tf.Pad' op is "
        "neither a custom op nor a flex op"
    }
    assert (out / "child.keras").is_file() and (out / "genotype.json").is_file()


def test_a_converter_error_becomes_one_line():
    error = RuntimeError(
        "loc(fused[...]): error: 'tf.Pad' op is neither a custom op nor a flex op\n"
        "<unknown>:0: note: see current operation: %0 = ...\n" + "x" * 5000
    )
    assert litert.converter_error(error) == "'tf.Pad' op is neither a custom op nor a flex op"


# -- every candidate op through TFLite -----------------------------------------------------------
# the ops without weights convert in about 2 s, the others in 3-15 s (slow)
FAST_TFLITE_OPS = ("none", "max_pool_3x3", "avg_pool_3x3")


@pytest.mark.parametrize(
    "name",
    [
        n if n in FAST_TFLITE_OPS else pytest.param(n, marks=pytest.mark.slow)
        for n in ops.registered_ops()
    ],
)
def test_every_op_converts_to_every_tflite_format(name):
    """Each registered op at stride 1 and 2, at two input sizes, converts with builtin ops
    only (float, float16, dynamic range; full int8 at the larger size) and runs."""
    for shape in ((8, 8, 8), (12, 12, 32)):
        for strides in (1, 2):
            keras.utils.set_random_seed(0)
            inputs = keras.Input(shape)
            op = ops.create_op(name, shape[-1], strides)
            model = keras.Model(inputs, op(inputs))
            modes = ["float", "float16", "dynamic"]
            for mode in modes:
                flat = litert.convert_keras_frozen(model, mode)
                _runs(flat, shape)
            if shape[-1] == 32:
                images = np.random.default_rng(0).normal(size=(8, *shape)).astype(np.float32)
                _runs(litert.convert_keras(model, "int8", images), shape)


def _runs(flatbuffer, shape):
    interpreter = litert.interpreter(flatbuffer)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    x = np.zeros(detail["shape"], detail["dtype"])
    interpreter.set_tensor(detail["index"], x)
    interpreter.invoke()
    out = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    assert out.shape[0] == 1 and out.shape[-1] == shape[-1]


def test_setting_errors_are_setting_errors():
    assert issubclass(io.OutputDirError, SettingError)


# -- keras-tuner's state files --------------------------------------------------------------------
TRIAL_ARGV = [
    "--strategy=random",
    "--search_space=nasrl",
    "--max_layers=2",
    "--num_filters=4,8",
    "--filter_sizes=1,3",
    "--max_trials=2",
    "--trial_epochs=1",
    "--batch_size=128",
    "--verbose=0",
]


@pytest.mark.slow
def test_a_torn_keras_tuner_file_is_named_and_files_are_written_whole(tmp_path, capsys):
    import keras_tuner.src.utils as kt_utils

    out = tmp_path / "run"
    assert search.main(["kerasnas-search", f"--output_dir={out}", *TRIAL_ARGV]) == 0
    assert getattr(kt_utils.save_json, "kerasnas", False)  # the crash-safe writer
    oracles = list(out.rglob("oracle.json"))
    assert len(oracles) == 1
    # no temporary left beside the state files
    assert not [p for p in out.rglob("*") if p.name.startswith(".") and ".tmp" in p.name]
    text = oracles[0].read_text()
    oracles[0].write_text(text[: len(text) // 2])  # what an in-place write cut short leaves
    capsys.readouterr()
    code = search.main(["kerasnas-search", f"--output_dir={out}", "--resume", *TRIAL_ARGV])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert f"keras-tuner's state file {oracles[0]} is damaged" in err[0] and "--overwrite" in err[0]


def test_a_stopped_comparison_stops_its_running_searches(monkeypatch):
    from kerasnas.jobs import tools

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    tools._CHILDREN.add(proc)

    def interrupted(futures):  # Ctrl-C while the comparison waits for its runs
        raise KeyboardInterrupt
        yield

    monkeypatch.setattr(tools.concurrent.futures, "as_completed", interrupted)
    try:
        with pytest.raises(KeyboardInterrupt):
            for _ in tools.run_parallel({}, 1):
                pass
    finally:
        tools._CHILDREN.discard(proc)
    assert proc.wait(timeout=5) == -signal.SIGTERM  # terminated, not left running


# -- kills at injected points (a real process dies with os._exit) ---------------------------------
KILLER = textwrap.dedent(
    """
    import contextlib, os, sys
    from kerasnas import io
    target, count, when, module, *argv = sys.argv[1:]
    real, seen = io.atomic_path, [0]

    @contextlib.contextmanager
    def dying(path):
        hit = os.path.basename(str(path)) == target
        if hit:
            seen[0] += 1
        if hit and seen[0] == int(count) and when == "before":
            os._exit(9)  # nothing of this file written
        with real(path) as tmp:
            yield tmp
            if hit and seen[0] == int(count) and when == "inside":
                os._exit(9)  # the temporary file complete, not renamed into place
    io.atomic_path = dying
    if module == "train":
        from kerasnas.cli.train import main
    else:
        from kerasnas.cli.search import main
    sys.exit(main([module, *argv]))
    """
)


def _killed(target, count, when, module, argv):
    proc = subprocess.run(
        [sys.executable, "-c", KILLER, target, str(count), when, module, *argv],
        env=ENV,  # the thread count of this process, which runs the reference
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 9, proc.stderr[-3000:]


@pytest.fixture(scope="module")
def train_reference(tmp_path_factory):
    """An uninterrupted kerasnas-train run to compare resumed runs with."""
    from kerasnas.cli import train

    root = tmp_path_factory.mktemp("kills")
    genotype = root / "genotype.json"
    DARTS_V2.save(genotype)
    argv = [f"--genotype={genotype}", *TRAIN_ARGS]
    assert train.main(["kerasnas-train", f"--output_dir={root / 'ref'}", *argv]) == 0
    return root, argv


TRAIN_ARGS = ["--init_channels=4", "--layers=3", "--epochs=3", "--batch_size=64", "--verbose=0"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "target, count, when",
    [
        ("state.json", 2, "before"),  # between the checkpoint's array file and its manifest
        ("state.json", 2, "inside"),  # the manifest written, not yet renamed
        ("model.keras", 1, "inside"),  # inside the final writes
        ("metrics.json", 1, "before"),  # everything but the last file
    ],
)
def test_a_killed_run_resumes_to_the_uninterrupted_result(train_reference, target, count, when):
    from kerasnas.cli import train

    root, argv = train_reference
    out = root / f"{target}-{count}-{when}"
    _killed(target, count, when, "train", [f"--output_dir={out}", *argv])
    assert not (out / "metrics.json").exists()
    assert train.main(["kerasnas-train", f"--output_dir={out}", "--resume", *argv]) == 0
    want = json.loads((root / "ref" / "metrics.json").read_text())
    got = json.loads((out / "metrics.json").read_text())
    for key in ("test_accuracy", "valid_accuracy", "final_train_loss", "params"):
        assert got[key] == want[key], key
    ref_model = keras.models.load_model(root / "ref" / "model.keras")
    model = keras.models.load_model(out / "model.keras")
    for a, b in zip(ref_model.weights, model.weights, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    leftovers = [p for p in out.rglob("*") if p.name.startswith(".") and ".tmp" in p.name]
    assert not leftovers and not (out / io.LOCK_FILE).exists()


@pytest.mark.slow
def test_a_search_killed_inside_keras_tuner_writes_resumes(tmp_path):
    ref, out = tmp_path / "ref", tmp_path / "run"
    assert search.main(["kerasnas-search", f"--output_dir={ref}", *TRIAL_ARGV]) == 0
    _killed("trial.json", 3, "inside", "search", [f"--output_dir={out}", *TRIAL_ARGV])
    assert search.main(["kerasnas-search", f"--output_dir={out}", "--resume", *TRIAL_ARGV]) == 0

    def trials(path):
        with open(path / "history.csv", encoding="utf-8") as f:
            return [(r["trial_id"], r["architecture"], r["reward"]) for r in csv.DictReader(f)]

    assert trials(out) == trials(ref) and len(trials(ref)) == 2
    leftovers = [p for p in out.rglob("*") if p.name.startswith(".") and ".tmp" in p.name]
    assert not leftovers


@pytest.mark.slow
@pytest.mark.parametrize(
    "sig, code, how",
    [(signal.SIGTERM, 143, "terminated (SIGTERM)"), (signal.SIGINT, 130, "interrupted")],
)
def test_a_signal_stops_a_real_run_with_one_line(train_reference, sig, code, how):
    import time

    root, argv = train_reference
    out = root / f"signal-{code}"
    argv = [a if not a.startswith("--epochs=") else "--epochs=500" for a in argv]
    proc = subprocess.Popen(
        [sys.executable, "-m", "kerasnas.cli.train", f"--output_dir={out}", *argv],
        env=ENV,  # the thread count of this process, which runs the reference
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a suite started in the background by a shell without job control inherits SIGINT
        # ignored, and so would the run (as under nohup): give it the default, as a terminal
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 240
    while not (out / "checkpoints" / "state.json").exists():
        assert time.monotonic() < deadline and proc.poll() is None, "no checkpoint"
        time.sleep(0.2)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err[-2000:]
    lines = [line for line in err.splitlines() if line.startswith("kerasnas-train:")]
    assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
    assert f"stopped: {how}; the checkpoint of epoch" in lines[0] and "--resume" in lines[0]
    json.loads((out / "checkpoints" / "state.json").read_text())  # whole
