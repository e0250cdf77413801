"""Tests for kerasnas.data: splits, determinism, statistics, npz validation and tfds loading."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from kerasnas import data
from kerasnas.data import DataError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def digits() -> data.DataBundle:
    return data.load("digits", seed=0)


def _rows(x: np.ndarray) -> set[bytes]:
    return {row.tobytes() for row in np.asarray(x, np.float32)}


def _digest(ds: tf.data.Dataset) -> str:
    h = hashlib.sha256()
    for x, y in ds.as_numpy_iterator():
        h.update(x.tobytes())
        h.update(y.tobytes())
    return h.hexdigest()


def _labels(ds: tf.data.Dataset) -> np.ndarray:
    return np.concatenate([y for _, y in ds.as_numpy_iterator()])


# ----------------------------------------------------------------------------- digits


def test_digits_shapes_sizes_and_dtypes(digits):
    assert digits.name == "digits"
    assert digits.input_shape == (8, 8, 1)
    assert digits.num_classes == 10
    assert digits.raw_range == (0.0, 16.0)
    assert digits.num_train + digits.num_valid + digits.num_test == 1797
    assert digits.num_valid == digits.num_test == round(0.2 * 1797)
    x, y = next(iter(digits.train(0, 64)))
    assert x.shape == (64, 8, 8, 1) and x.dtype == tf.float32
    assert y.shape == (64,) and y.dtype == tf.int32
    assert 0 <= float(tf.reduce_min(x)) and float(tf.reduce_max(x)) <= 16
    for split, n in (("train", digits.num_train), ("valid", digits.num_valid)):
        xs, ys = digits.numpy(split)
        assert xs.shape == (n, 8, 8, 1) and xs.dtype == np.float32
        assert ys.shape == (n,) and ys.dtype == np.int32
    assert sum(len(y) for _, y in digits.test(100).as_numpy_iterator()) == digits.num_test


def test_digits_splits_are_disjoint_and_cover_everything(digits):
    from sklearn.datasets import load_digits

    original = _rows(load_digits().images)
    assert len(original) == 1797  # precondition: rows are unique, so hashes identify examples
    parts = [_rows(digits.numpy(s)[0]) for s in data.SPLITS]
    assert [len(p) for p in parts] == [digits.num_train, digits.num_valid, digits.num_test]
    assert not parts[0] & parts[1] and not parts[0] & parts[2] and not parts[1] & parts[2]
    assert parts[0] | parts[1] | parts[2] == original
    for split in data.SPLITS:  # stratified: every class in every split
        assert set(digits.numpy(split)[1]) == set(range(10))


def test_train_order_is_a_pure_function_of_seed_and_epoch(digits):
    again = data.load("digits", seed=0)
    assert _digest(digits.train(3, 64)) == _digest(again.train(3, 64))
    assert _digest(digits.train(3, 64)) == _digest(digits.train(3, 64))
    assert _digest(digits.train(3, 64)) != _digest(digits.train(4, 64))
    # an epoch visits every training example exactly once
    xs = np.concatenate([x for x, _ in digits.train(5, 64).as_numpy_iterator()])
    assert len(xs) == digits.num_train and _rows(xs) == _rows(digits.numpy("train")[0])
    # a dataset object iterated twice gives the same order
    ds = digits.train(6, 32)
    assert _digest(ds) == _digest(ds)


def test_train_independent_of_tensorflow_global_seed(digits):
    before = _digest(digits.train(2, 50))
    tf.random.set_seed(1234)
    try:
        assert _digest(digits.train(2, 50)) == before
    finally:
        tf.random.set_seed(None)


def test_unshuffled_and_eval_orders_match_numpy(digits):
    y = digits.numpy("train")[1]
    got = np.concatenate([b for _, b in digits.train(0, 100, shuffle=False).as_numpy_iterator()])
    np.testing.assert_array_equal(got, y)
    for split, fn in (("valid", digits.valid), ("test", digits.test)):
        xs = np.concatenate([b for b, _ in fn(64).as_numpy_iterator()])
        np.testing.assert_array_equal(xs, digits.numpy(split)[0])
    sizes = [len(b) for _, b in digits.train(1, 100, drop_remainder=True).as_numpy_iterator()]
    assert sizes == [100] * (digits.num_train // 100)
    np.testing.assert_array_equal(digits.numpy("valid", limit=7)[1], digits.numpy("valid")[1][:7])


def test_different_seeds_give_different_splits(digits):
    other = data.load("digits", seed=1)
    assert _rows(other.numpy("valid")[0]) != _rows(digits.numpy("valid")[0])
    assert _digest(other.train(0, 64)) != _digest(digits.train(0, 64))


def test_mean_std_match_numpy_and_normalization_centres_data(digits):
    x, _ = digits.numpy("train")
    assert digits.mean.shape == (1,) and digits.mean.dtype == np.float32
    assert digits.std.shape == (1,) and digits.std.dtype == np.float32
    np.testing.assert_allclose(digits.mean, x.mean(axis=(0, 1, 2)), rtol=1e-5)
    np.testing.assert_allclose(digits.std, x.std(axis=(0, 1, 2)), rtol=1e-5)
    normalized = np.asarray(digits.normalization_layer()(x))
    assert abs(normalized.mean()) < 1e-4
    assert abs(normalized.std() - 1) < 1e-3


def test_normalization_layer_survives_model_save_and_load(digits, tmp_path):
    norm = digits.normalization_layer()
    inputs = keras.Input(digits.input_shape)
    outputs = keras.layers.Dense(digits.num_classes)(keras.layers.Flatten()(norm(inputs)))
    model = keras.Model(inputs, outputs)
    x, _ = digits.numpy("valid", limit=16)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    restored = [la for la in loaded.layers if isinstance(la, keras.layers.Normalization)]
    assert len(restored) == 1
    np.testing.assert_allclose(np.asarray(restored[0](x)), np.asarray(norm(x)), rtol=1e-6)


def test_max_examples_and_image_size():
    small = data.load("digits", max_examples=100, image_size=(16, 12))
    assert small.num_train == 100 and small.num_valid == small.num_test == 359
    assert small.input_shape == (16, 12, 1)
    x, y = next(iter(small.train(0, 100)))
    assert x.shape == (100, 16, 12, 1) and len(np.unique(y)) > 5  # a random subset
    assert 0 <= float(tf.reduce_min(x)) and float(tf.reduce_max(x)) <= 16


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"valid_fraction": 0.0}, "valid_fraction"),
        ({"valid_fraction": 1.5}, "valid_fraction"),
        ({"test_fraction": -0.1}, "test_fraction"),
        ({"valid_fraction": 0.5, "test_fraction": 0.5}, "valid_fraction + test_fraction"),
        ({"max_examples": 0}, "max_examples"),
        ({"image_size": (8,)}, "image_size"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, needle):
    with pytest.raises(DataError, match=re.escape(needle)):
        data.load("digits", **kwargs)


def test_bad_method_arguments(digits):
    with pytest.raises(DataError, match="batch_size"):
        digits.train(0, 0)
    with pytest.raises(DataError, match="epoch"):
        digits.train(-1, 8)
    with pytest.raises(DataError, match="split"):
        digits.numpy("validation")


@pytest.mark.parametrize("spec", ["", "mnist", "csv:x.csv", "npz:", "tfds:", "Digits"])
def test_unknown_spec_lists_accepted_forms(spec):
    with pytest.raises(DataError) as info:
        data.load(spec)
    message = str(info.value)
    assert repr(spec) in message and "npz:<path>" in message and "tfds:<name>" in message


# ----------------------------------------------------------------------------- npz


def _labels_for(n: int, k: int = 3) -> np.ndarray:
    return (np.arange(n) % k).astype(np.int64)


@pytest.mark.parametrize("shape", [(60, 5, 4), (60, 5, 4, 2)])
def test_npz_uint8(tmp_path, shape):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=shape, dtype=np.uint8)
    y = _labels_for(60)
    path = tmp_path / "set.npz"
    np.savez(path, x=x, y=y)
    bundle = data.load(f"npz:{path}", seed=3)
    channels = shape[3] if len(shape) == 4 else 1
    assert bundle.input_shape == (5, 4, channels)
    assert bundle.num_classes == 3 and bundle.raw_range == (0.0, 255.0)
    assert (bundle.num_train, bundle.num_valid, bundle.num_test) == (36, 12, 12)
    assert bundle.mean.shape == bundle.std.shape == (channels,)
    x4 = x.reshape(60, 5, 4, channels).astype(np.float32)
    got = [bundle.numpy(s) for s in data.SPLITS]
    assert set().union(*(_rows(g[0]) for g in got)) == _rows(x4)
    xb, yb = next(iter(bundle.train(0, 8)))
    assert xb.shape == (8, 5, 4, channels) and xb.dtype == tf.float32 and yb.dtype == tf.int32
    # labels travel with their images
    index = {row.tobytes(): label for row, label in zip(x4, y, strict=False)}
    for xs, ys in got:
        assert [index[r.tobytes()] for r in xs] == list(ys)


def test_npz_float_images_raw_range(tmp_path):
    x = np.linspace(-1, 3, 40 * 4).reshape(40, 2, 2).astype(np.float64)
    np.savez(tmp_path / "f.npz", x=x, y=_labels_for(40, 2))
    bundle = data.load(f"npz:{tmp_path / 'f.npz'}")
    assert bundle.raw_range == (-1.0, 3.0) and bundle.num_classes == 2


def _write(path: Path, **arrays) -> str:
    np.savez(path, **arrays)
    return str(path)


def _npz_case(tmp_path: Path, case: str) -> tuple[str, str]:
    """Writes a broken file for `case`; returns (path, substring expected in the message)."""
    path = tmp_path / f"{case}.npz"
    good_x = np.zeros((30, 4, 4), np.uint8)
    good_y = _labels_for(30)
    if case == "missing":
        return str(tmp_path / "nope.npz"), "does not exist"
    if case == "not_npz":
        path.write_text("hello, not a zip")
        return str(path), "is not a .npz archive"
    if case == "npy":
        with open(path, "wb") as f:
            np.save(f, good_x)
        return str(path), "single .npy array"
    if case == "no_x":
        return _write(path, images=good_x, y=good_y), "no array 'x'"
    if case == "no_y":
        return _write(path, x=good_x, labels=good_y), "no array 'y'"
    if case == "x_ndim":
        return _write(path, x=np.zeros((30, 16)), y=good_y), "'x' must have shape"
    if case == "y_ndim":
        return _write(path, x=good_x, y=good_y[:, None]), "'y' must have shape (N,)"
    if case == "mismatch":
        return _write(path, x=good_x, y=good_y[:20]), "'x' has 30 examples but 'y' has 20"
    if case == "float_labels":
        return _write(path, x=good_x, y=good_y.astype(np.float32)), "integer class labels"
    if case == "negative":
        return _write(path, x=good_x, y=good_y - 1), "negative labels"
    if case == "string_x":
        return _write(path, x=np.full((30, 4, 4), "a"), y=good_y), "'x' must be numeric"
    if case == "too_few":
        return _write(path, x=good_x[:2], y=good_y[:2]), "too few"
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "not_npz",
        "npy",
        "no_x",
        "no_y",
        "x_ndim",
        "y_ndim",
        "mismatch",
        "float_labels",
        "negative",
        "string_x",
        "too_few",
    ],
)
def test_npz_errors(tmp_path, case):
    path, needle = _npz_case(tmp_path, case)
    with pytest.raises(DataError) as info:
        data.load(f"npz:{path}")
    message = str(info.value)
    assert path in message and needle in message and "\n" not in message


# ----------------------------------------------------------------------------- tfds


@pytest.mark.parametrize(("name", "shape"), [("mnist", (28, 28, 1)), ("cifar10", (32, 32, 3))])
def test_tfds_mocked(name, shape):
    with tfds.testing.mock_data(num_examples=40):
        bundle = data.load(f"tfds:{name}", seed=1)
        assert bundle.name == f"tfds:{name}"
        assert bundle.input_shape == shape and bundle.num_classes == 10
        assert bundle.raw_range == (0.0, 255.0)
        assert bundle.num_train > 0 and bundle.num_valid > 0 and bundle.num_test > 0
        assert bundle.mean.shape == bundle.std.shape == (shape[2],)
        x_all, y_all = bundle.numpy("train")
        np.testing.assert_allclose(bundle.mean, x_all.mean(axis=(0, 1, 2)), rtol=1e-4)
        np.testing.assert_allclose(bundle.std, x_all.std(axis=(0, 1, 2)), rtol=1e-4)
        x, y = next(iter(bundle.train(0, 16)))
        assert x.shape == (16, *shape) and x.dtype == tf.float32
        assert y.shape == (16,) and y.dtype == tf.int32
        assert 0 <= float(tf.reduce_min(x)) and float(tf.reduce_max(x)) <= 255
        for ds in (bundle.valid(8), bundle.test(8)):
            xv, yv = next(iter(ds))
            assert xv.shape[1:] == shape and xv.dtype == tf.float32 and yv.dtype == tf.int32
        assert _digest(bundle.train(2, 16)) == _digest(bundle.train(2, 16))
        assert not np.array_equal(_labels(bundle.train(2, 16)), _labels(bundle.train(3, 16)))
        epoch = _labels(bundle.train(2, 16))
        np.testing.assert_array_equal(np.sort(epoch), np.sort(y_all))
        np.testing.assert_array_equal(_labels(bundle.valid(7)), bundle.numpy("valid")[1])
        capped = data.load(f"tfds:{name}", max_examples=10)
        assert capped.num_train == 10 and len(capped.numpy("train")[1]) == 10


def _spy_splits(monkeypatch) -> list:
    calls = []
    original = tfds.load

    def spy(name, **kwargs):
        calls.append(kwargs["split"])
        assert kwargs["download"] is False and kwargs["as_supervised"] is True
        return original(name, **kwargs)

    monkeypatch.setattr(tfds, "load", spy)
    return calls


def test_tfds_uses_test_split_and_slices_train_for_valid(monkeypatch):
    calls = _spy_splits(monkeypatch)
    with tfds.testing.mock_data(num_examples=10):
        data.load("tfds:mnist", valid_fraction=0.25)
    assert calls == [["train[:75%]", "train[75%:]", "test"]]


def test_tfds_without_test_split_and_variable_image_size(monkeypatch, tmp_path):
    # Metadata saying tf_flowers has only a "train" split; mock_data reads it from data_dir.
    builder = tfds.builder("tf_flowers", data_dir=tmp_path)
    split = tfds.core.SplitInfo(name="train", shard_lengths=[100], num_bytes=0)
    builder.info.set_splits(tfds.core.SplitDict([split]))
    os.makedirs(builder.data_dir, exist_ok=True)
    builder.info.write_to_directory(builder.data_dir)
    calls = _spy_splits(monkeypatch)
    with tfds.testing.mock_data(num_examples=12, data_dir=str(tmp_path)):
        with pytest.raises(DataError, match="image_size"):
            data.load("tfds:tf_flowers")
        bundle = data.load("tfds:tf_flowers", image_size=(16, 20), test_fraction=0.1)
    assert calls == [["train[:70%]", "train[70%:90%]", "train[90%:]"]]
    assert bundle.input_shape == (16, 20, 3) and bundle.num_classes == 5
    x, _ = next(iter(bundle.train(0, 4)))
    assert x.shape == (4, 16, 20, 3) and x.dtype == tf.float32


def test_tfds_not_available_locally_is_a_quick_data_error(tmp_path):
    start = time.monotonic()
    with pytest.raises(DataError) as info:
        data.load("tfds:mnist", data_dir=tmp_path)
    message = str(info.value)
    assert "'mnist'" in message and "not available locally" in message
    assert str(tmp_path) in message and "\n" not in message
    assert time.monotonic() - start < 20
    # what a user can do: prepare it elsewhere and copy it here, no options that do not exist
    assert "tfds build mnist" in message and "TFDS_DATA_DIR" in message
    assert "download=True /" not in message and "data_dir=..." not in message
    # a command names its flag: the spec and the alternative are the {dataset} setting
    flags = info.value.render(lambda path: f"--{path}")
    assert flags.startswith("--dataset 'tfds:mnist': ") and flags.endswith("another --dataset")


@pytest.mark.parametrize("name", ["no_such_dataset_xyz", "mnist:99.0.0"])
def test_tfds_unknown_name_or_version(name):
    with pytest.raises(DataError) as info:
        data.load(f"tfds:{name}")
    assert name.split(":")[0] in str(info.value) and "\n" not in str(info.value)


# ----------------------------------------------------------------------------- fresh process

_FRESH = """
import hashlib, sys
import tensorflow as tf
tf.config.experimental.enable_op_determinism()
import tensorflow_datasets as tfds
from kerasnas import data

def digest(ds):
    h = hashlib.sha256()
    for x, y in ds.as_numpy_iterator():
        h.update(x.tobytes()); h.update(y.tobytes())
    return h.hexdigest()

print(digest(data.load("digits", seed=5).train(3, 64)))
with tfds.testing.mock_data(num_examples=30):
    print(digest(data.load("tfds:mnist", seed=5).train(3, 8)))
"""


@pytest.mark.slow
def test_fresh_process_with_op_determinism_reproduces_batches():
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-c", _FRESH],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    fresh = result.stdout.split()[-2:]
    here = _digest(data.load("digits", seed=5).train(3, 64))
    with tfds.testing.mock_data(num_examples=30):
        mocked = _digest(data.load("tfds:mnist", seed=5).train(3, 8))
    assert fresh == [here, mocked]
