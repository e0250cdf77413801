"""SNAS trainer: joint updates, determinism, resume, resource penalty, user models."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import kerasnas
from kerasnas import data as data_lib
from kerasnas.layers import arch_variables
from kerasnas.resource import expected_cost
from kerasnas.search_spaces.cell import CellSpace
from kerasnas.trainers.snas import SNASConfig, SNASTrainer

OPS = ("none", "skip_connect", "max_pool_3x3", "sep_conv_3x3")


@pytest.fixture(scope="module")
def digits():
    tf.config.experimental.enable_op_determinism()
    return data_lib.load("digits", seed=0, max_examples=256)


@pytest.fixture(scope="module")
def digits_full():
    """All 1,797 digits (1,079 for training): enough steps for learning to show."""
    return data_lib.load("digits", seed=0)


def _supernet(bundle, relaxation="gumbel"):
    keras.utils.set_random_seed(0)
    space = CellSpace(
        bundle.input_shape, bundle.num_classes, init_channels=4, layers=3, nodes=2, ops=OPS
    )
    return space, space.build_supernet(relaxation, bundle.normalization_layer(), seed=0)


def _config(**kw):
    base = dict(epochs=2, batch_size=64, a_lr=3e-2, seed=0)
    base.update(kw)
    return SNASConfig(**base)


def _arch(model):
    return [keras.ops.convert_to_numpy(v).copy() for v in arch_variables(model)]


@pytest.mark.slow
def test_weights_and_logits_move_together_and_loss_falls(digits_full):
    digits = digits_full
    _, net = _supernet(digits)
    before = _arch(net)
    w_before = keras.ops.convert_to_numpy(net.get_layer("stem_conv").kernel).copy()
    history = SNASTrainer(net, _config(epochs=3), verbose=0).fit(digits)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert all(np.abs(a - b).max() > 1e-3 for a, b in zip(_arch(net), before, strict=True))
    assert (
        np.abs(keras.ops.convert_to_numpy(net.get_layer("stem_conv").kernel) - w_before).max() > 0
    )
    temps = [r["temperature"] for r in history]
    assert temps[0] == pytest.approx(1.0) and temps[-1] == pytest.approx(0.03)
    assert 0.0 <= history[-1]["sampled_supernet_valid_acc"] <= 1.0
    assert "entropy" in history[-1] and "expected_params" in history[-1]


@pytest.mark.slow
def test_same_seed_same_result_and_resume_equals_uninterrupted(digits, tmp_path):
    _, net_a = _supernet(digits)
    SNASTrainer(net_a, _config(), str(tmp_path / "a"), verbose=0).fit(digits)

    class Stop(Exception):
        pass

    class Interrupted(SNASTrainer):
        def checkpoint(self, epochs_done):
            super().checkpoint(epochs_done)
            if epochs_done == 1:
                raise Stop  # as if the process were killed after epoch 1's checkpoint

    _, net_b = _supernet(digits)
    with pytest.raises(Stop):
        Interrupted(net_b, _config(), str(tmp_path / "b"), verbose=0).fit(digits)
    state = json.loads((tmp_path / "b" / "checkpoints" / "state.json").read_text())
    assert state["epochs_done"] == 1

    _, net_c = _supernet(digits)
    resumed = SNASTrainer(net_c, _config(), str(tmp_path / "b"), verbose=0)
    history = resumed.fit(digits, resume=True)
    assert [r["epoch"] for r in history] == [1, 2]
    for a, c in zip(_arch(net_a), _arch(net_c), strict=True):
        np.testing.assert_array_equal(a, c)
    for va, vc in zip(net_a.weights, net_c.weights, strict=True):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(va), keras.ops.convert_to_numpy(vc)
        )

    _, net_d = _supernet(digits)
    with pytest.raises(ValueError, match="other settings.*a_lr"):
        SNASTrainer(net_d, _config(a_lr=1e-3), str(tmp_path / "b"), verbose=0).fit(
            digits, resume=True
        )


@pytest.mark.slow
@pytest.mark.parametrize("estimator", ["reparam", "score", "expected"])
def test_resource_penalty_lowers_expected_params(digits_full, estimator):
    digits = digits_full
    _, net = _supernet(digits)
    start = expected_cost(net.layers and kerasnas.mixed_ops(net), "params")
    cfg = _config(
        epochs=2, resource_lambda=5.0, resource_form="log", resource_estimator=estimator, a_lr=5e-2
    )
    SNASTrainer(net, cfg, verbose=0).fit(digits)
    end = expected_cost(kerasnas.mixed_ops(net), "params")
    assert end < 0.7 * start, (start, end)


@pytest.mark.slow
def test_gumbel_hard_trains(digits):
    space, net = _supernet(digits, "gumbel_hard")
    history = SNASTrainer(net, _config(epochs=2), verbose=0).fit(digits)
    assert np.isfinite(history[-1]["train_loss"])
    child = space.build_child(space.derive(net), net)
    x = digits.numpy("valid", limit=16)[0]
    np.testing.assert_allclose(child(x, training=False), net(x, training=False), atol=1e-5)


@pytest.mark.slow
def test_gumbel_hard_step_trains_only_the_sampled_ops(digits):
    _, net = _supernet(digits, "gumbel_hard")
    trainer = SNASTrainer(net, _config(w_weight_decay=1e-2), verbose=0)
    trainer.on_epoch_begin(0)
    x, y = digits.numpy("train", limit=32)
    before = [v.numpy().copy() for v in trainer.weight_vars]
    tf.function(trainer.train_step)(tf.constant(x), tf.constant(y.astype("int32")))
    moved = {
        id(v) for v, b in zip(trainer.weight_vars, before, strict=True) if not np.array_equal(v, b)
    }
    checked = 0
    for layer in trainer.mixed:
        sampled = int(layer.sampled_index())
        for k, candidate in enumerate(layer.candidates):
            for v in candidate.trainable_variables:
                checked += 1
                # decay alone would move an unsampled op's weights; it must stay put
                assert (id(v) in moved) == (k == sampled), (layer.name, k, sampled, v.path)
                momentum = trainer.w_opt.momentum_buffer(v).numpy()
                assert np.any(momentum != 0) == (k == sampled), (layer.name, k, v.path)
    assert checked > 0


def test_softmax_relaxation_is_rejected(digits):
    _, net = _supernet(digits, "softmax")
    with pytest.raises(ValueError, match="gumbel"):
        SNASTrainer(net, _config(), verbose=0)


@pytest.mark.slow
def test_user_cnn_search_then_plain_model_with_inherited_weights(digits_full):
    """A user's CNN where each layer chooses its kernel size: search, then derive."""
    digits = digits_full
    keras.utils.set_random_seed(0)

    def choice(name):
        return kerasnas.MixedOp(
            [keras.layers.Conv2D(16, k, padding="same", name=f"k{k}") for k in (1, 3, 5)],
            name=name,
        )

    inputs = keras.Input(digits.input_shape)
    x = digits.normalization_layer()(inputs)
    for name in ("conv1", "conv2"):
        x = choice(name)(x)
        # momentum 0.9: Keras' default 0.99 leaves the moving statistics far from the
        # batch statistics after only ~80 steps
        x = keras.layers.BatchNormalization(momentum=0.9)(x)
        x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(digits.num_classes)(x))

    SNASTrainer(model, _config(epochs=5, w_lr=0.1), verbose=0).fit(digits)
    child = kerasnas.derive_model(model)
    assert not kerasnas.mixed_ops(child)
    assert set(kerasnas.choices(model)) == {"conv1", "conv2"}
    x_valid, y_valid = digits.numpy("valid")
    np.testing.assert_allclose(child(x_valid), model(x_valid, training=False), atol=1e-5)
    acc = float(np.mean(np.argmax(child(x_valid), -1) == y_valid))
    assert acc > 0.6, acc


def test_trainer_needs_mixed_ops():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="no MixedOp"):
        SNASTrainer(model, SNASConfig())


@pytest.mark.parametrize(
    "field, value",
    [
        ("epochs", 0),
        ("w_lr", -1.0),
        ("resource", "watts"),
        ("resource_estimator", "magic"),
        ("resource_lambda", -1.0),
    ],
)
def test_config_errors_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        SNASConfig(**{field: value}).validate()


@pytest.mark.slow
def test_jit_compiled_step_matches_the_graph_step(digits):
    """jit_compile=True (XLA) runs the joint step. XLA draws other Gumbel noise from the same
    seed (its own RNG algorithm), so the runs agree closely, not bit for bit."""

    def model():
        keras.utils.set_random_seed(0)
        inputs = keras.Input(digits.input_shape)
        x = digits.normalization_layer()(inputs)
        x = kerasnas.MixedOp(
            [keras.layers.Conv2D(8, k, padding="same", name=f"k{k}") for k in (1, 3)],
            name="choice",
        )(x)
        x = keras.layers.GlobalAveragePooling2D()(keras.layers.ReLU()(x))
        return keras.Model(inputs, keras.layers.Dense(digits.num_classes)(x))

    runs = {}
    for jit in (False, True):
        net = model()
        start = _arch(net)[0]
        history = SNASTrainer(net, _config(epochs=1, jit_compile=jit), verbose=0).fit(digits)
        runs[jit] = history[-1]["train_loss"]
        assert np.abs(_arch(net)[0] - start).max() > 1e-3  # the logits were updated
    assert np.isfinite(runs[True])
    assert runs[True] == pytest.approx(runs[False], rel=1e-2)


@pytest.mark.parametrize("decay", [1e-3, 0.0])
def test_logit_decay_under_adam_undoes_a_sharp_distribution(decay):
    """Why the search job turns the logits' L2 decay off: late in a search (low
    temperature) the loss's gradient on the logits is tiny noise; with coupled decay, Adam
    normalises the decay term into full-size steps back to 0 and a sharp distribution
    flattens, without it the logits only wander."""
    from kerasnas.jobs.one_shot import default_config
    from kerasnas.trainers.base import Trainer, entropy

    cfg = default_config("snas", a_weight_decay=decay)
    logits = keras.Variable(np.float32([3.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]))
    adam = keras.optimizers.Adam(cfg.a_lr, beta_1=cfg.a_beta_1, beta_2=cfg.a_beta_2)
    adam.build([logits])
    rng = np.random.default_rng(0)
    for _ in range(100):  # about 6 digits epochs
        noise = tf.constant(rng.normal(0.0, 1e-5, 8), tf.float32)
        Trainer.apply_update(adam, [noise], [logits], cfg.a_grad_clip, cfg.a_weight_decay)
    p = np.exp(logits.numpy()) / np.exp(logits.numpy()).sum()
    start = entropy(np.exp([3.0] + [0.0] * 7) / np.exp([3.0] + [0.0] * 7).sum())
    if decay:
        assert entropy(p) > start + 0.5, (entropy(p), start)  # flattened (2.08 = uniform)
    else:
        assert cfg.a_weight_decay == 0.0  # the job's default
        assert entropy(p) < start + 0.3, (entropy(p), start)
