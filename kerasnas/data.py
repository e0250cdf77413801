"""Dataset loading: the one place in kerasnas that reads data.

`load(spec)` returns a `DataBundle` holding a deterministic train/valid/test split and
`tf.data` pipelines over it. Accepted specs:

* ``"digits"``: scikit-learn's bundled 8x8 digits (1797 images, values 0..16, 10 classes),
  split in memory by ``seed``.
* ``"npz:<path>"``: a ``.npz`` file with ``x`` of shape (N, H, W) or (N, H, W, C), any real
  dtype, and ``y`` of shape (N,) holding integer labels 0..K-1; split in memory by ``seed``.
* ``"tfds:<name>"``: a TensorFlow Datasets image-classification dataset that is already
  prepared locally (``<name>`` is anything `tfds.load` accepts, e.g. ``mnist`` or
  ``cifar10:3.0.2``). Nothing is downloaded unless ``download=True``. The split is fixed by
  tfds split slicing, so ``seed`` only affects shuffling.

Images are always yielded as RAW values (float32, e.g. 0..255 for uint8 data) with labels as
int32; models put `DataBundle.normalization_layer()` first so they accept raw images.
Training batches are a pure function of ``(seed, epoch)``: the same call in a fresh process
yields the same batches, independently of TensorFlow's global seed, also under
`tf.config.experimental.enable_op_determinism()`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import zipfile
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from kerasnas.errors import SettingError
from kerasnas.wording import count

__all__ = ["SPLITS", "DataBundle", "DataError", "load"]

SPLITS: tuple[str, ...] = ("train", "valid", "test")

_ACCEPTED_SPECS = "'digits', 'npz:<path>' or 'tfds:<name>[:<version>]'"
# Mean/std of streamed (tfds) datasets are computed over at most this many training images.
_STATS_LIMIT = 10_000
# Streamed splits whose decoded images take at most this many bytes are cached in memory.
_CACHE_BYTES = 256 * 2**20
# Streamed training data is shuffled in blocks of this many bytes (at least _MIN_BLOCK images);
# a split that fits in one block gets a full permutation every epoch.
_BLOCK_BYTES = 192 * 2**20
_MIN_BLOCK = 256
_CHUNK = 4096


class DataError(SettingError):
    """Bad dataset spec, file, content or argument; the message is one line saying what."""


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _epoch_seed(seed: int, epoch: int) -> int:
    """A 31-bit seed that depends only on (seed, epoch)."""
    state = np.random.SeedSequence([seed, epoch, 0x6B6E6173]).generate_state(1)[0]
    return int(state) & 0x7FFFFFFF


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise DataError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


_MAX_ABS = 1e18  # larger input values overflow float32 in normalisation (x - mean)^2
_MIN_STD = 1e-6  # a smaller spread vanishes in normalisation (Keras floors std at 1e-7)


class _Stats:
    """Running per-channel count / mean / sum of squared deviations / min / max in float64,
    merged chunk by chunk (Chan et al.), so values far from 0 keep their variance."""

    def __init__(self, channels: int) -> None:
        self.count = 0
        self.mean = np.zeros(channels, np.float64)
        self.m2 = np.zeros(channels, np.float64)
        self.low = math.inf
        self.high = -math.inf

    def update(self, x: np.ndarray) -> None:
        flat = np.asarray(x, np.float64).reshape(-1, x.shape[-1])
        if flat.size == 0:
            return
        n = flat.shape[0]
        mean = flat.mean(axis=0)
        m2 = np.square(flat - mean).sum(axis=0)
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + np.square(delta) * (self.count * n / total)
        self.count = total
        self.low = min(self.low, float(flat.min()))
        self.high = max(self.high, float(flat.max()))

    def check(self, spec: str) -> None:
        """DataError when normalising the values would lose them: constant, overflowing
        float32, or spread too little to survive (x - mean) / std."""
        if self.low == self.high:
            raise DataError(f"dataset {spec!r}: every value of 'x' is {self.low:g}: no signal")
        largest = max(abs(self.low), abs(self.high))
        if largest > _MAX_ABS:
            raise DataError(
                f"dataset {spec!r}: 'x' has values up to {largest:.3g}, beyond {_MAX_ABS:.0e}: "
                "normalising them overflows float32; rescale 'x'"
            )
        std = np.sqrt(self.m2 / self.count)
        if np.max(std) < _MIN_STD:
            raise DataError(
                f"dataset {spec!r}: the values of 'x' spread by {np.max(std):.3g} (standard "
                f"deviation) around {float(np.mean(self.mean)):.6g}: below {_MIN_STD:g}, they "
                "vanish (underflow) in normalisation; rescale 'x'"
            )

    def mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel mean and standard deviation (float32; a constant channel gets 1)."""
        std = np.sqrt(self.m2 / self.count)
        std = np.where(std < _MIN_STD, 1.0, std)
        return self.mean.astype(np.float32), std.astype(np.float32)


# --------------------------------------------------------------------------------------------
# Sources: where a bundle's examples live. Both return element-ordered tf.data pipelines.


class _ArraySource:
    """Splits held in memory as tensors; batches are gathered by a numpy index order."""

    def __init__(self, splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
        self._x = {k: tf.convert_to_tensor(x) for k, (x, _) in splits.items()}
        self._y = {k: tf.convert_to_tensor(y.astype(np.int32)) for k, (_, y) in splits.items()}

    def _batches(self, split: str, order: np.ndarray, batch_size: int, drop: bool):
        x, y = self._x[split], self._y[split]

        def gather(index):
            return tf.cast(tf.gather(x, index), tf.float32), tf.gather(y, index)

        ds = tf.data.Dataset.from_tensor_slices(order.astype(np.int64))
        ds = ds.batch(batch_size, drop_remainder=drop)
        ds = ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE)
        return ds.prefetch(tf.data.AUTOTUNE)

    def train(self, seed: int, epoch: int, batch_size: int, shuffle: bool, drop: bool, part: tuple):
        k, parts = part
        order = np.arange(k, int(self._y["train"].shape[0]), parts)
        if shuffle:
            order = np.random.default_rng(_epoch_seed(seed, epoch)).permutation(order)
        return self._batches("train", order, batch_size, drop)

    def evaluate(self, split: str, batch_size: int):
        return self._batches(split, np.arange(int(self._y[split].shape[0])), batch_size, False)

    def numpy(self, split: str, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
        x, y = self._x[split], self._y[split]
        if limit is not None:
            x, y = x[:limit], y[:limit]
        return tf.cast(x, tf.float32).numpy(), y.numpy()


class _StreamSource:
    """Splits read lazily through tf.data (tfds); small splits are cached in memory."""

    def __init__(
        self, splits: dict[str, tf.data.Dataset], counts: dict[str, int], image_bytes: int
    ) -> None:
        self._raw = splits
        self._counts = counts
        self._image_bytes = image_bytes
        self._ds = {
            k: ds.cache() if counts[k] * image_bytes <= _CACHE_BYTES else ds
            for k, ds in splits.items()
        }

    @staticmethod
    def _finish(ds: tf.data.Dataset, batch_size: int, drop: bool) -> tf.data.Dataset:
        ds = ds.batch(batch_size, drop_remainder=drop)
        ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=tf.data.AUTOTUNE)
        return ds.prefetch(tf.data.AUTOTUNE)

    def train(self, seed: int, epoch: int, batch_size: int, shuffle: bool, drop: bool, part: tuple):
        ds = self._ds["train"]
        k, parts = part
        if parts > 1:
            ds = ds.enumerate().filter(lambda i, _: i % parts == k).map(lambda _, e: e)
        if shuffle:
            # Stateless shuffling inside blocks: unlike Dataset.shuffle, the order depends only
            # on (seed, epoch), not on TensorFlow's global seed.
            block = max(_MIN_BLOCK, _BLOCK_BYTES // max(self._image_bytes, 1))
            block = min(block, max(self._counts["train"] // parts, 1))
            base = tf.constant(_epoch_seed(seed, epoch), tf.int64)

            def permute(index, example):
                x, y = example
                seeds = tf.stack([base, index])
                order = tf.random.experimental.stateless_shuffle(tf.range(tf.shape(y)[0]), seeds)
                return tf.gather(x, order), tf.gather(y, order)

            ds = ds.batch(block).enumerate().map(permute).unbatch()
        return self._finish(ds, batch_size, drop)

    def evaluate(self, split: str, batch_size: int):
        return self._finish(self._ds[split], batch_size, False)

    def numpy(self, split: str, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
        ds = self._ds[split] if limit is None else self._raw[split].take(limit)
        xs, ys = [], []
        for x, y in ds.batch(1024).as_numpy_iterator():
            xs.append(x.astype(np.float32))
            ys.append(y)
        if not xs:  # limit == 0
            spec = self._raw[split].element_spec[0]
            return np.zeros((0, *spec.shape), np.float32), np.zeros((0,), np.int32)
        return np.concatenate(xs), np.concatenate(ys)


# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class DataBundle:
    """A loaded dataset: split sizes, raw-pixel statistics and deterministic pipelines.

    Attributes:
        name: the spec it was loaded from, e.g. ``"digits"``.
        input_shape: (H, W, C) of one raw image.
        num_classes: number of classes K; labels are 0..K-1.
        mean: per-channel mean of the raw training images, shape (C,), float32.
        std: per-channel standard deviation (>= 1e-6), shape (C,), float32.
        raw_range: (low, high) range of raw pixel values, e.g. (0., 255.) for uint8 images.
        num_train, num_valid, num_test: examples per split.
        seed: seed of the split (in-memory specs) and of the per-epoch training order.
    """

    name: str
    input_shape: tuple[int, int, int]
    num_classes: int
    mean: np.ndarray
    std: np.ndarray
    raw_range: tuple[float, float]
    num_train: int
    num_valid: int
    num_test: int
    seed: int
    _source: _ArraySource | _StreamSource = dataclasses.field(repr=False)

    def train(
        self,
        epoch: int,
        batch_size: int,
        shuffle: bool = True,
        drop_remainder: bool = False,
        part: tuple[int, int] = (0, 1),
    ) -> tf.data.Dataset:
        """Training batches ``(x, y)``: x float32 raw values (B, H, W, C), y int32 (B,).

        With ``shuffle`` the order is a pure function of ``(self.seed, epoch)``. ``part=(k, n)``
        keeps only part k of n of the training split: example i belongs to part ``i % n``
        (DARTS trains weights on one half and architecture logits on the other).
        """
        epoch = _check_int(epoch, "epoch", 0)
        batch_size = _check_int(batch_size, "batch_size", 1)
        k, parts = self._check_part(part)
        return self._source.train(
            self.seed, epoch, batch_size, bool(shuffle), drop_remainder, (k, parts)
        )

    def part_size(self, part: tuple[int, int]) -> int:
        """Examples of the training split in ``part=(k, n)`` (see :meth:`train`)."""
        k, parts = self._check_part(part)
        return len(range(k, self.num_train, parts))

    @staticmethod
    def _check_part(part: tuple[int, int]) -> tuple[int, int]:
        try:
            k, parts = (int(v) for v in part)
        except (TypeError, ValueError):
            raise DataError(f"part must be a pair (k, n), got {part!r}") from None
        if parts < 1 or not 0 <= k < parts:
            raise DataError(f"part must be (k, n) with 0 <= k < n, got {part!r}")
        return k, parts

    def valid(self, batch_size: int) -> tf.data.Dataset:
        """Validation batches ``(x, y)`` in a fixed order (not shuffled); shapes as `train`."""
        return self._source.evaluate("valid", _check_int(batch_size, "batch_size", 1))

    def test(self, batch_size: int) -> tf.data.Dataset:
        """Test batches ``(x, y)`` in a fixed order (not shuffled); shapes as `train`."""
        return self._source.evaluate("test", _check_int(batch_size, "batch_size", 1))

    def numpy(self, split: str, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The first ``limit`` (default all) examples of ``split`` in its fixed order.

        Returns x float32 raw values (N, H, W, C) and y int32 (N,).
        """
        if split not in SPLITS:
            raise DataError(f"split must be one of {SPLITS}, got {split!r}")
        if limit is not None:
            limit = _check_int(limit, "limit", 0)
        return self._source.numpy(split, limit)

    def normalization_layer(self) -> keras.layers.Layer:
        """A serialisable `keras.layers.Normalization` mapping raw images to ~N(0, 1)."""
        return keras.layers.Normalization(
            axis=-1, mean=self.mean.copy(), variance=np.square(self.std).astype(np.float32)
        )


def load(
    spec: str = "digits",
    *,
    seed: int = 0,
    valid_fraction: float = 0.2,
    test_fraction: float = 0.2,
    image_size: tuple[int, int] | None = None,
    max_examples: int | None = None,
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
) -> DataBundle:
    """Loads a dataset spec (see the module docstring) into a `DataBundle`.

    Args:
        spec: ``"digits"``, ``"npz:<path>"`` or ``"tfds:<name>"``.
        seed: non-negative; fixes the in-memory split and the per-epoch training order.
        valid_fraction: fraction of the examples (of the tfds ``train`` split) used for
            validation; ``0 < valid_fraction`` and ``valid_fraction + test_fraction < 1``.
        test_fraction: fraction used for testing; a tfds dataset that has a ``test`` split
            uses that instead.
        image_size: (H, W) to bilinearly resize every image to (values stay in the raw
            range); required for tfds datasets with variable image sizes.
        max_examples: cap on the number of training examples (for quick runs).
        data_dir: tfds data directory (default: tfds's own, e.g. ``~/tensorflow_datasets``).
        download: let tfds download and prepare a missing dataset (needs internet).
    """
    if not isinstance(spec, str):
        raise DataError(f"dataset spec must be a str ({_ACCEPTED_SPECS}), got {spec!r}")
    seed = _check_int(seed, "{seed}", 0)
    for arg, value in (("valid_fraction", valid_fraction), ("test_fraction", test_fraction)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
            raise DataError(f"{{{arg}}} must be a number in (0, 1), got {value!r}")
    if valid_fraction + test_fraction >= 1:
        raise DataError(
            f"{{valid_fraction}} + {{test_fraction}} must be < 1, got {valid_fraction} + "
            f"{test_fraction}"
        )
    if image_size is not None:
        if (
            not isinstance(image_size, (tuple, list))
            or len(image_size) != 2
            or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in image_size)
        ):
            raise DataError(f"image_size must be (H, W) with positive ints, got {image_size!r}")
        image_size = (int(image_size[0]), int(image_size[1]))
    if max_examples is not None:
        max_examples = _check_int(max_examples, "max_examples", 1)

    try:
        return _dispatch(
            spec, seed, valid_fraction, test_fraction, image_size, max_examples, data_dir, download
        )
    except DataError as e:  # name the setting and the spec in front of what went wrong
        raise DataError(f"{{dataset}} {spec!r}: {e.template}") from None


def _dispatch(
    spec, seed, valid_fraction, test_fraction, image_size, max_examples, data_dir, download
) -> DataBundle:
    kind, _, rest = spec.partition(":")
    if spec == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = digits.images.astype(np.float32)[..., None]
        return _from_arrays(
            spec,
            x,
            digits.target,
            (0.0, 16.0),
            seed,
            valid_fraction,
            test_fraction,
            image_size,
            max_examples,
        )
    if kind == "npz" and rest:
        x, y = _read_npz(rest)
        raw_range = (0.0, 255.0) if x.dtype == np.uint8 else (float(x.min()), float(x.max()))
        return _from_arrays(
            spec, x, y, raw_range, seed, valid_fraction, test_fraction, image_size, max_examples
        )
    if kind == "tfds" and rest:
        return _from_tfds(
            spec,
            rest,
            seed,
            valid_fraction,
            test_fraction,
            image_size,
            max_examples,
            data_dir,
            download,
        )
    raise DataError(f"unknown dataset spec; expected {_ACCEPTED_SPECS}")


# --------------------------------------------------------------------------------------------
# In-memory datasets (digits, npz).


def _read_npz(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Reads and validates ``x``/``y`` of an npz file; x comes back as (N, H, W, C)."""
    full = os.path.expanduser(path)
    if not os.path.isfile(full):
        raise DataError(f"npz file {path!r} does not exist")
    try:
        with open(full, "rb") as f:
            magic = f.read(6)
    except OSError as e:
        raise DataError(f"npz file {path!r} cannot be read: {_one_line(e)}") from e
    if not magic.startswith(b"PK") and magic != b"\x93NUMPY":
        raise DataError(
            f"npz file {path!r} is not a .npz archive (a zip of .npy arrays, as numpy.savez writes)"
        )
    try:
        archive = np.load(full, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"npz file {path!r} is not a valid .npz archive: {_one_line(e)}") from e
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"npz file {path!r} is a single .npy array, expected arrays 'x' and 'y'")
    with archive:
        arrays = {}
        for key in ("x", "y"):
            if key not in archive.files:
                raise DataError(
                    f"npz file {path!r} has no array {key!r} (found {sorted(archive.files)})"
                )
            try:
                arrays[key] = archive[key]
            except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
                raise DataError(
                    f"npz file {path!r}: cannot read array {key!r}: {_one_line(e)}"
                ) from e
    x, y = arrays["x"], arrays["y"]
    where = f"npz file {path!r}"
    if x.ndim not in (3, 4) or 0 in x.shape[1:]:
        raise DataError(f"{where}: 'x' must have shape (N, H, W) or (N, H, W, C), got {x.shape}")
    if x.dtype.kind not in "biuf":
        raise DataError(f"{where}: 'x' must be numeric (bool/int/float), got dtype {x.dtype}")
    if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
        raise DataError(f"{where}: 'x' contains NaN or infinite values")
    if y.ndim != 1:
        raise DataError(f"{where}: 'y' must have shape (N,), got {y.shape}")
    if len(y) != len(x):
        raise DataError(f"{where}: 'x' has {count(len(x), 'example')} but 'y' has {len(y)}")
    if y.dtype.kind not in "iu":
        raise DataError(f"{where}: 'y' must hold integer class labels, got dtype {y.dtype}")
    if len(y) == 0:
        raise DataError(f"{where}: 'x' and 'y' hold no examples")
    if y.min() < 0:
        raise DataError(f"{where}: 'y' has negative labels (min {y.min()}), expected 0..K-1")
    _check_labels(y, where)
    if x.dtype.kind == "b":
        x = x.astype(np.uint8)
    elif x.dtype.kind == "f" and x.dtype != np.float32:
        x = x.astype(np.float32)
    if x.ndim == 3:
        x = x[..., None]
    return x, y


def _check_labels(y: np.ndarray, where: str) -> None:
    """Labels must be 0..K-1, every one used, K >= 2: DataError saying what is wrong."""
    classes = np.unique(y)
    if len(classes) < 2:
        raise DataError(
            f"{where}: 'y' holds one class only (label {classes[0]}); a classifier needs two "
            "or more"
        )
    k = int(classes[-1]) + 1
    if len(classes) != k:
        missing = np.setdiff1d(np.arange(min(k, 10**7)), classes)
        shown = ", ".join(str(v) for v in missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise DataError(
            f"{where}: 'y' has {len(classes)} distinct labels but the largest is {k - 1}; "
            f"labels must be 0..K-1 with every one used (missing {k - len(classes):,}: "
            f"{shown}); remap them to 0..{len(classes) - 1}"
        )


def _resize(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of (N, H, W, C) images in chunks; returns float32."""
    if x.shape[1:3] == size:
        return x
    parts = [tf.image.resize(x[i : i + _CHUNK], size).numpy() for i in range(0, len(x), _CHUNK)]
    return np.concatenate(parts).astype(np.float32)


def _split_sizes(n: int, valid_fraction: float, test_fraction: float, spec: str):
    n_test = max(1, round(test_fraction * n))
    n_valid = max(1, round(valid_fraction * n))
    if n - n_test - n_valid < 1:
        raise DataError(
            f"dataset {spec!r} has {count(n, 'example')}, too few for "
            f"valid_fraction={valid_fraction} and test_fraction={test_fraction} "
            "(every split needs at least one)"
        )
    return n_valid, n_test


def _split_indices(y: np.ndarray, seed: int, n_valid: int, n_test: int):
    """(train, valid, test) index arrays; stratified by label when every class allows it."""
    from sklearn.model_selection import train_test_split

    index = np.arange(len(y))
    try:
        rest, test = train_test_split(index, test_size=n_test, random_state=seed, stratify=y)
        train, valid = train_test_split(
            rest, test_size=n_valid, random_state=seed + 1, stratify=y[rest]
        )
    except ValueError:  # a class too small to stratify: plain seeded permutation
        order = np.random.default_rng(seed).permutation(len(y))
        test, valid, train = np.split(order, [n_test, n_test + n_valid])
    return train, valid, test


def _from_arrays(
    spec: str,
    x: np.ndarray,
    y: np.ndarray,
    raw_range: tuple[float, float],
    seed: int,
    valid_fraction: float,
    test_fraction: float,
    image_size: tuple[int, int] | None,
    max_examples: int | None,
) -> DataBundle:
    n_valid, n_test = _split_sizes(len(y), valid_fraction, test_fraction, spec)
    train, valid, test = _split_indices(y, seed, n_valid, n_test)
    absent = np.setdiff1d(np.unique(y), y[train])
    if len(absent):
        shown = ", ".join(str(v) for v in absent[:10]) + (", ..." if len(absent) > 10 else "")
        raise DataError(
            f"dataset {spec!r}: class(es) {shown} have no example in the training split "
            f"({count(len(y), 'example')}, valid_fraction={valid_fraction}, "
            f"test_fraction={test_fraction}); add examples of them or lower the fractions"
        )
    if max_examples is not None:
        train = train[:max_examples]
    if image_size is not None:
        x = _resize(x, image_size)
    splits = {
        "train": (x[train], y[train]),
        "valid": (x[valid], y[valid]),
        "test": (x[test], y[test]),
    }
    stats = _Stats(x.shape[-1])
    x_train = splits["train"][0]
    for i in range(0, len(x_train), _CHUNK):
        stats.update(x_train[i : i + _CHUNK])
    stats.check(spec)
    mean, std = stats.mean_std()
    return DataBundle(
        name=spec,
        input_shape=tuple(int(d) for d in x.shape[1:]),
        num_classes=int(y.max()) + 1,
        mean=mean,
        std=std,
        raw_range=(float(raw_range[0]), float(raw_range[1])),
        num_train=len(train),
        num_valid=len(valid),
        num_test=len(test),
        seed=seed,
        _source=_ArraySource(splits),
    )


# --------------------------------------------------------------------------------------------
# TensorFlow Datasets.


def _percent(fraction: float) -> str:
    text = f"{fraction * 100:.6f}".rstrip("0").rstrip(".")
    return f"{text}%"


def _count(ds: tf.data.Dataset, spec: str, split: str) -> int:
    n = int(ds.cardinality())
    if n == tf.data.INFINITE_CARDINALITY:
        raise DataError(f"tfds dataset {spec!r}: split {split!r} is infinite")
    if n < 0:  # unknown: count once
        n = int(ds.reduce(np.int64(0), lambda c, _: c + 1))
    return n


def _not_prepared(name: str, builder: Any) -> str:
    """What to do about a tfds dataset that is not prepared under the data directory used
    (``data_dir``, else ``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``)."""
    base = name.split(":", 1)[0]
    return (
        f"tfds dataset {name!r} is not available locally: no prepared data in "
        f"{builder.data_dir}. Prepare it on a machine with internet access (`tfds build "
        f"{base}`, or `tensorflow_datasets.load({base!r}, download=True)` in Python), copy "
        f"the folder {base}/ it makes in ~/tensorflow_datasets into {builder.data_dir_root} "
        "here (or set TFDS_DATA_DIR to the folder that holds it), then run again; or choose "
        "another {dataset}"
    )


def _from_tfds(
    spec: str,
    name: str,
    seed: int,
    valid_fraction: float,
    test_fraction: float,
    image_size: tuple[int, int] | None,
    max_examples: int | None,
    data_dir: str | os.PathLike | None,
    download: bool,
) -> DataBundle:
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:  # pragma: no cover - tfds is a dependency
        raise DataError(f"spec {spec!r} needs the tensorflow-datasets package") from e
    data_dir = os.fspath(data_dir) if data_dir is not None else None
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.DatasetNotFoundError as e:
        raise DataError(f"tfds dataset {name!r} (spec {spec!r}) does not exist in tfds") from e
    except Exception as e:  # tfds raises assorted errors for bad names/versions/configs
        raise DataError(f"tfds dataset {name!r} (spec {spec!r}): {_one_line(e)}") from e

    info = builder.info
    keys = info.supervised_keys
    if not (isinstance(keys, tuple) and len(keys) == 2 and all(isinstance(k, str) for k in keys)):
        raise DataError(f"tfds dataset {name!r} has no (image, label) supervised keys")
    image_feature, label_feature = info.features[keys[0]], info.features[keys[1]]
    num_classes = getattr(label_feature, "num_classes", None)
    if not num_classes:
        raise DataError(f"tfds dataset {name!r}: label {keys[1]!r} is not a ClassLabel")
    stored = tuple(getattr(image_feature, "shape", ()))
    if len(stored) == 2:
        stored = (*stored, 1)
    if len(stored) != 3 or stored[2] is None:
        raise DataError(f"tfds dataset {name!r}: {keys[0]!r} is not an image, shape {stored}")
    if image_size is None and (stored[0] is None or stored[1] is None):
        raise DataError(
            f"tfds dataset {name!r} has variable image size {stored}; pass image_size=(H, W)"
        )
    resize = image_size is not None and tuple(stored[:2]) != image_size
    height, width = image_size if resize else stored[:2]
    input_shape = (int(height), int(width), int(stored[2]))
    dtype = tf.float32 if resize else tf.as_dtype(image_feature.dtype)

    known = set(info.splits.keys())
    if known and "train" not in known:
        raise DataError(f"tfds dataset {name!r} has no 'train' split (splits: {sorted(known)})")
    if not known or "test" in known:  # unknown (not prepared): tfds reports it below
        cut = _percent(1 - valid_fraction)
        split_names = [f"train[:{cut}]", f"train[{cut}:]", "test"]
    else:
        cut1, cut2 = _percent(1 - valid_fraction - test_fraction), _percent(1 - test_fraction)
        split_names = [f"train[:{cut1}]", f"train[{cut1}:{cut2}]", f"train[{cut2}:]"]

    try:
        loaded = tfds.load(
            name,
            split=split_names,
            data_dir=data_dir,
            download=download,
            as_supervised=True,
            shuffle_files=False,
        )
    except Exception as e:
        if not download and not builder.is_prepared():
            raise DataError(_not_prepared(name, builder)) from e
        raise DataError(f"tfds dataset {name!r} could not be read: {_one_line(e)}") from e

    def prepare(image, label):
        if image.shape.rank == 2:
            image = image[..., None]
        if resize:
            image = tf.image.resize(image, input_shape[:2])
        image = tf.ensure_shape(tf.cast(image, dtype), input_shape)
        return image, tf.cast(label, tf.int32)

    splits: dict[str, tf.data.Dataset] = {}
    counts: dict[str, int] = {}
    for split, split_name, ds in zip(SPLITS, split_names, loaded, strict=False):
        ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
        if split == "train" and max_examples is not None:
            ds = ds.take(max_examples)
        counts[split] = _count(ds, spec, split_name)
        if counts[split] == 0:
            raise DataError(f"tfds dataset {name!r}: split {split_name!r} is empty")
        splits[split] = ds

    stats = _Stats(input_shape[2])
    for x, _ in splits["train"].take(_STATS_LIMIT).batch(512).as_numpy_iterator():
        stats.update(x)
    stats.check(spec)
    mean, std = stats.mean_std()
    stored_dtype = tf.as_dtype(image_feature.dtype)
    if stored_dtype == tf.uint8:
        raw_range = (0.0, 255.0)
    elif stored_dtype == tf.uint16:
        raw_range = (0.0, 65535.0)
    else:  # observed over the statistics sample
        raw_range = (stats.low, stats.high)
    image_bytes = math.prod(input_shape) * dtype.size
    return DataBundle(
        name=spec,
        input_shape=input_shape,
        num_classes=int(num_classes),
        mean=mean,
        std=std,
        raw_range=raw_range,
        num_train=counts["train"],
        num_valid=counts["valid"],
        num_test=counts["test"],
        seed=seed,
        _source=_StreamSource(splits, counts, image_bytes),
    )
