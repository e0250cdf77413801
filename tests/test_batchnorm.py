"""Batch-norm statistics of one-shot children: batch statistics leave the moving averages
alone, recalibration recomputes them (and nothing else), and scoring a weight-sharing child
with either gives the right numbers."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasnas import data as data_lib
from kerasnas.batchnorm import Recalibrator, batch_norms, saved_statistics, statistics_mode
from kerasnas.ops import BatchNorm
from kerasnas.search_spaces.cell import CellSpace
from kerasnas.trainers.enas import RandomWSTrainer, WeightSharingConfig

OPS = ("none", "skip_connect", "max_pool_3x3", "sep_conv_3x3")


@pytest.fixture(scope="module")
def digits():
    return data_lib.load("digits", seed=0, max_examples=256)


def _small_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    x = BatchNorm(affine=True, name="bn")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(2)(x))


def _stats(model):
    return [
        v.numpy().copy() for bn in batch_norms(model) for v in (bn.moving_mean, bn.moving_variance)
    ]


def test_frozen_statistics_normalise_by_the_batch_and_keep_the_averages():
    model = _small_model()
    x = np.random.default_rng(0).normal(3.0, 2.0, (8, 6, 6, 3)).astype("float32")
    before = _stats(model)
    fn = tf.function(lambda x: model(x, training=True))
    with statistics_mode(model, "frozen"):
        frozen = fn.get_concrete_function(tf.TensorSpec((None, 6, 6, 3)))
    out_frozen = frozen(tf.constant(x)).numpy()
    for a, b in zip(before, _stats(model), strict=True):
        np.testing.assert_array_equal(a, b)
    out_update = model(x, training=True).numpy()  # the default: same output, averages move
    np.testing.assert_allclose(out_frozen, out_update, atol=1e-5)
    assert any(np.abs(a - b).max() > 0.01 for a, b in zip(before, _stats(model), strict=True))


def test_recalibration_sets_the_mean_of_batch_statistics_and_touches_nothing_else():
    model = _small_model()
    rng = np.random.default_rng(1)
    batches = [
        (rng.normal(1.0 + i, 1.0 + i, (16, 6, 6, 3)).astype("float32"), np.zeros(16, "int32"))
        for i in range(3)
    ]
    weights = [w.numpy().copy() for w in model.trainable_weights]
    recalibrate = Recalibrator(model, [tf.TensorSpec((None, 6, 6, 3))])
    assert recalibrate(batches) == 3
    # expected: mean over batches of the conv output's per-channel batch mean / unbiased var
    conv = keras.Model(model.inputs, model.layers[1].output)
    means, variances = [], []
    for x, _ in batches:
        h = conv(x).numpy().reshape(-1, 4)
        means.append(h.mean(0))
        variances.append(h.var(0, ddof=1))
    bn = batch_norms(model)[0]
    np.testing.assert_allclose(bn.moving_mean.numpy(), np.mean(means, 0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        bn.moving_variance.numpy(), np.mean(variances, 0), rtol=1e-4, atol=1e-5
    )
    for a, b in zip(weights, [w.numpy() for w in model.trainable_weights], strict=True):
        np.testing.assert_array_equal(a, b)
    assert bn.statistics == "update"  # the tracing mode was restored
    with pytest.raises(ValueError, match="no batches"):
        recalibrate([])


def test_saved_statistics_restores_the_averages():
    model = _small_model()
    before = _stats(model)
    with saved_statistics(model):
        model(np.ones((4, 6, 6, 3), "float32") * 5, training=True)
        assert any(np.abs(a - b).max() > 0 for a, b in zip(before, _stats(model), strict=True))
    for a, b in zip(before, _stats(model), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_weight_sharing_child_scores_per_batch_norm_mode(digits):
    keras.utils.set_random_seed(0)
    space = CellSpace(digits.input_shape, digits.num_classes, 4, 3, 2, OPS)
    net = space.build_supernet("controlled", digits.normalization_layer(), seed=0)
    trainer = RandomWSTrainer(net, space, WeightSharingConfig(epochs=1, seed=0), verbose=0)
    trainer.fit(digits)
    arch = trainer.sample_archs(1, np.random.default_rng(4))[0]
    weights = [w.numpy().copy() for w in net.trainable_weights]
    stats = _stats(net)
    valid = digits.valid(64)
    scores = {
        bn: trainer.child_accuracy(arch, valid, digits, bn=bn)
        for bn in ("moving", "batch", "recalibrate")
    }
    # scoring leaves the supernet as it was: weights and moving statistics
    for a, b in zip(weights, [w.numpy() for w in net.trainable_weights], strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(stats, _stats(net), strict=True):
        np.testing.assert_array_equal(a, b)
    # the recalibrated score is the child's accuracy with its recomputed statistics
    with saved_statistics(net):
        trainer.recalibrate(trainer.encoder.choices(arch), digits)
        expected = trainer.child_accuracy(arch, valid, bn="moving")
    assert scores["recalibrate"] == expected
    assert all(0.0 <= s <= 1.0 for s in scores.values())
    with pytest.raises(ValueError, match="needs data"):
        trainer.child_accuracy(arch, valid, bn="recalibrate")
    with pytest.raises(ValueError, match="child_bn"):
        WeightSharingConfig(child_bn="nope").validate()


@pytest.mark.slow
def test_two_children_sharing_weights_are_scored_right_only_with_their_own_statistics(digits):
    """The cause found for weight sharing's chance-level scores once its weights learn: the
    moving averages mix the children's statistics. Two children alternate on one supernet;
    each then scores well with batch statistics or recalibration (the default), badly with
    the shared moving averages (the old scoring)."""
    keras.utils.set_random_seed(0)
    space = CellSpace(digits.input_shape, digits.num_classes, 4, 3, 2, OPS)
    net = space.build_supernet("controlled", digits.normalization_layer(), seed=0)
    pool = RandomWSTrainer.sample_archs  # the uniform sampler, for the pool itself

    class TwoChildren(RandomWSTrainer):
        def sample_archs(self, n, rng):
            children = pool(self, 2, np.random.default_rng(7))
            return [children[i] for i in rng.integers(0, 2, n)]

    trainer = TwoChildren(net, space, WeightSharingConfig(epochs=6, seed=0), verbose=0)
    history = trainer.fit(digits)
    children = trainer.sample_archs(40, np.random.default_rng(1))
    assert (
        trainer.encoder.choices(children[0]).tolist()
        != trainer.encoder.choices(next(c for c in children if c != children[0])).tolist()
    )
    valid = digits.valid(64)
    for arch in {str(sorted(c.items())): c for c in children}.values():
        moving = trainer.child_accuracy(arch, valid, bn="moving")
        default = trainer.child_accuracy(arch, valid, digits)
        assert default > 0.35 and default > moving + 0.15, (default, moving, history[-1])
