"""Export: SavedModel and the four TFLite variants, each verified; report; clear errors."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import kerasnas
from kerasnas import data as data_lib
from kerasnas.export import (
    REPORT,
    ExportError,
    Tolerances,
    VerificationError,
    export_for_dataset,
    export_model,
    litert,
    parse_formats,
)
from kerasnas.search_spaces import CellSpace

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": ROOT}
GENOTYPE = {
    "normal": [
        [["sep_conv_3x3", 0], ["skip_connect", 1]],
        [["dil_conv_3x3", 2], ["avg_pool_3x3", 0]],
    ],
    "normal_concat": [2, 3],
    "reduce": [
        [["max_pool_3x3", 0], ["sep_conv_3x3", 1]],
        [["skip_connect", 2], ["max_pool_3x3", 1]],
    ],
    "reduce_concat": [2, 3],
}


@pytest.fixture(scope="module")
def digits():
    return data_lib.load("digits", seed=0)


@pytest.fixture(scope="module")
def child(digits):
    """A small cell child (sep/dil convs, pools, skips, factorized reduce, BN) trained on
    digits with Keras' own fit: raw images in, logits out."""
    keras.utils.set_random_seed(0)
    space = CellSpace(digits.input_shape, digits.num_classes, init_channels=8, layers=3, nodes=2)
    genotype = kerasnas.Genotype.from_dict(GENOTYPE)
    model = space.build_child(genotype, preprocessing=digits.normalization_layer())
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    x, y = digits.numpy("train")
    model.fit(x, y, epochs=8, batch_size=64, verbose=0)
    return model


@pytest.fixture(scope="module")
def exported(child, digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "deploy"
    report = export_for_dataset(
        child,
        str(out),
        "saved_model,tflite,tflite_fp16,tflite_dynamic,tflite_int8",
        digits,
        input_dtype="uint8",  # digits' raw values are the integers 0..16
        log=lambda *a: None,
    )
    return out, report


@pytest.mark.slow
def test_every_format_passes_and_is_reported(exported, digits):
    out, report = exported
    assert report["passed"] is True
    assert json.loads((out / REPORT).read_text()) == json.loads(json.dumps(report))
    assert report["keras_accuracy"] > 0.85  # a real classifier, so the checks mean something
    formats = report["formats"]
    assert set(formats) == {"saved_model", "tflite", "tflite_fp16", "tflite_dynamic", "tflite_int8"}
    for fmt, entry in formats.items():
        path = out / entry["file"]
        assert path.exists(), fmt
        if path.is_file():
            assert entry["size_bytes"] == path.stat().st_size
        assert entry["passed"] is True
        assert 0 <= entry["accuracy"] <= 1
    # the bars: float TFLite within 1e-4 of Keras, int8 within 2 points
    assert formats["tflite"]["max_abs_diff"] < 1e-4
    assert formats["saved_model"]["max_abs_diff"] < 1e-4
    assert report["keras_accuracy"] - formats["tflite_int8"]["accuracy"] <= 0.02
    for fmt in ("tflite", "tflite_fp16", "tflite_dynamic", "tflite_int8"):
        assert formats[fmt]["latency_ms"] > 0 and formats[fmt]["num_threads"] == 1
    # quantised files are smaller than the float one
    assert formats["tflite_int8"]["size_bytes"] < formats["tflite"]["size_bytes"]
    assert report["eval_examples"] == digits.num_test
    # nothing but the output directory was left in its parent
    assert [p.name for p in out.parent.iterdir()] == ["deploy"]


@pytest.mark.slow
def test_tflite_files_on_disk_reproduce_keras(exported, child, digits):
    out, report = exported
    x, y = digits.numpy("test")
    keras_p = keras.ops.convert_to_numpy(keras.ops.softmax(child(x, training=False)))
    flat = (out / "model.tflite").read_bytes()
    p = litert.predict(flat, x)
    assert np.abs(p - keras_p).max() < 1e-4
    p8 = litert.predict((out / "model_int8.tflite").read_bytes(), x)
    assert abs((p8.argmax(-1) == y).mean() - report["formats"]["tflite_int8"]["accuracy"]) < 1e-9


@pytest.mark.slow
def test_saved_model_serves_in_a_fresh_process_without_kerasnas(exported, child, digits, tmp_path):
    out, _ = exported
    x, _ = digits.numpy("test", 100)
    np.save(tmp_path / "x.npy", x.astype(np.uint8))
    script = textwrap.dedent(
        f"""
        import sys

        class NoKerasnas:  # any attempt to import kerasnas fails
            def find_spec(self, name, path=None, target=None):
                if name == "kerasnas" or name.startswith("kerasnas."):
                    raise ImportError("kerasnas is blocked in this process")
        sys.meta_path.insert(0, NoKerasnas())
        sys.path = [p for p in sys.path if p not in ("", {ROOT!r})]

        import numpy as np
        import tensorflow as tf

        fn = tf.saved_model.load({str(out / "saved_model")!r}).signatures["serving_default"]
        assert fn.structured_input_signature[1]["images"].dtype == tf.uint8
        p = fn(images=tf.constant(np.load({str(tmp_path / "x.npy")!r})))["probabilities"]
        np.save({str(tmp_path / "p.npy")!r}, p.numpy())
        assert not [m for m in sys.modules if m.startswith("kerasnas")]
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    served = np.load(tmp_path / "p.npy")
    keras_p = keras.ops.convert_to_numpy(keras.ops.softmax(child(x, training=False)))
    assert (served.argmax(-1) == keras_p.argmax(-1)).all()
    assert np.abs(served - keras_p).max() < 1e-4


@pytest.mark.slow
def test_int8_io_makes_integer_input_and_output(child, digits, tmp_path):
    x, y = digits.numpy("test")
    rep, _ = digits.numpy("train", 100)
    report = export_model(
        child,
        str(tmp_path / "q"),
        ["tflite_int8"],
        x_eval=x,
        y_eval=y,
        representative=rep,
        int8_io=True,
        log=lambda *a: None,
    )
    interp = litert.interpreter((tmp_path / "q" / "model_int8.tflite").read_bytes())
    assert interp.get_input_details()[0]["dtype"] == np.int8
    assert interp.get_output_details()[0]["dtype"] == np.int8
    assert report["formats"]["tflite_int8"]["passed"]


@pytest.mark.slow
def test_a_failed_check_is_an_error_and_writes_nothing(child, digits, tmp_path):
    x, y = digits.numpy("test", 50)
    strict = Tolerances(float_max_abs_diff=-1.0)  # nothing can pass
    with pytest.raises(VerificationError, match="tflite failed verification: max \\|diff\\|"):
        export_model(
            child,
            str(tmp_path / "out"),
            ["tflite"],
            x_eval=x,
            y_eval=y,
            tolerances=strict,
            log=lambda *a: None,
        )
    assert os.listdir(tmp_path) == []


@pytest.mark.slow
@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda m, d, o: export_model(m, o, ["tflite", "onnx"], x_eval=d),
            "unknown export format 'onnx'",
        ),
        (
            lambda m, d, o: export_model(m, o, ["tflite"], x_eval=d[:, :4]),
            r"evaluation images must have shape \(N, 8, 8, 1\)",
        ),
        (
            lambda m, d, o: export_model(m, o, ["tflite_int8"], x_eval=d),
            "needs a representative dataset",
        ),
        (
            lambda m, d, o: export_model(m, o, ["tflite_int8"], x_eval=d, representative=d[..., 0]),
            r"representative dataset must have shape \(N, 8, 8, 1\)",
        ),
        (lambda m, d, o: export_model(m, o, [], x_eval=d), "no export format"),
    ],
)
def test_bad_arguments_are_clear_errors(child, digits, tmp_path, call, message):
    x, _ = digits.numpy("test", 10)
    with pytest.raises(ExportError, match=message):
        call(child, x, str(tmp_path / "out"))
    assert os.listdir(tmp_path) == []


def test_parse_formats():
    assert parse_formats("tflite, tflite_int8,tflite") == ("tflite", "tflite_int8")
    assert parse_formats("") == ()


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "kerasnas.cli.export", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
    )


@pytest.mark.slow
def test_cli_bad_inputs_fail_with_one_clear_line(child, tmp_path):
    model = tmp_path / "m.keras"
    child.save(model)
    corrupt = tmp_path / "corrupt.keras"
    corrupt.write_bytes(b"not a zip archive")
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(model.read_bytes()[:2000])
    rep = tmp_path / "rep.npz"
    np.savez(rep, x=np.zeros((5, 4, 4, 1), np.float32))
    cases = [
        ([f"--model={tmp_path / 'missing.keras'}"], "missing.keras': no such file"),
        ([f"--model={corrupt}"], "not a .keras archive"),
        ([f"--model={truncated}"], "truncated.keras'"),
        ([f"--model={model}", "--formats=tflite,onnx"], "unknown export format 'onnx'"),
        (
            [f"--model={model}", "--formats=tflite_int8", f"--representative={rep}"],
            "--representative",
        ),
    ]
    for i, (args, expected) in enumerate(cases):
        out = tmp_path / f"out{i}"
        proc = _cli(*args, f"--output_dir={out}")
        assert proc.returncode == 2, (args, proc.stderr[-2000:])
        errors = [line for line in proc.stderr.splitlines() if "kerasnas-export: error:" in line]
        assert len(errors) == 1 and expected in errors[0], (args, proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr
        assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "corrupt.keras",
        "m.keras",
        "rep.npz",
        "truncated.keras",
    ]
