"""The SMASH-style hypernetwork of the nasrl space (kerasnas.estimation.hypernet): generated
weights are those of the space's own model, training learns, one trace serves every
architecture, saving and the estimator's reuse, settings."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from kerasnas import data
from kerasnas.cli import search
from kerasnas.errors import SettingError
from kerasnas.estimation import Estimate, TrialContext
from kerasnas.estimation.hypernet import FILE, HyperNet, HyperNetEstimator
from kerasnas.estimation.settings import EstimationSettings
from kerasnas.jobs.settings import TrialSettings
from kerasnas.search_spaces.nasrl import NASRLSpace


@pytest.fixture(scope="module")
def bundle():
    return data.load("digits", seed=0)


@pytest.fixture(scope="module")
def space():
    return NASRLSpace(
        max_layers=3, min_layers=2, filter_heights=(3, 5), filter_widths=(1, 3, 5), filters=(8, 16)
    )


def _net(space, bundle, seed=0):
    return HyperNet(
        space, bundle.input_shape, bundle.num_classes, bundle.mean, bundle.std, 16, seed
    )


@pytest.fixture(scope="module")
def trained(space, bundle):
    """A hypernetwork after 40 steps (its generator heads no longer zero) and its losses."""
    net = _net(space, bundle)
    x, y = bundle.numpy("train")
    return net, net.train(x, y, 40, batch_size=32, learning_rate=1e-2)


def _archs(space, n=6, seed=1):
    rng = np.random.default_rng(seed)
    archs = [space.sample(rng) for _ in range(n)]
    # one with a concatenation of two inputs and a two-layer classifier input
    archs.append(
        space.from_description(
            {
                "layers": [
                    {"filter_height": 5, "filter_width": 1, "filters": 16},
                    {"filter_height": 3, "filter_width": 5, "filters": 8, "inputs": []},
                    {"filter_height": 3, "filter_width": 3, "filters": 8, "inputs": [0, 1]},
                ]
            }
        )
    )
    return archs


def test_generated_kernels_have_the_shapes_of_the_architecture(space, trained, bundle):
    net, _ = trained
    for arch in _archs(space):
        model = space.build(arch, bundle.input_shape, bundle.num_classes)
        weights = net.generated_weights(arch)
        assert sorted(weights) == sorted(
            [f"L{n}_conv" for n in range(arch["num_layers"])] + ["classifier"]
        )
        for name, values in weights.items():
            expected = [tuple(w.shape) for w in model.get_layer(name).weights]
            assert [v.shape for v in values] == expected, name


def test_generated_forward_equals_the_space_model_with_the_weights_copied(space, trained, bundle):
    net, _ = trained
    x, _ = bundle.numpy("valid", 40)
    calibration = bundle.numpy("train", 96)[0]
    for arch in _archs(space):
        stats = net.statistics(arch, calibration, 32)
        model = net.build_model(arch, stats, bundle.normalization_layer())
        expected = model(x, training=False).numpy()
        got = net.logits(arch, x, stats)
        assert np.abs(got - expected).max() < 1e-5
        assert np.abs(expected).max() > 1e-2  # not trivially zero


def test_training_on_sampled_architectures_reduces_the_loss(trained):
    _, losses = trained
    assert len(losses) == 40
    assert np.mean(losses[-8:]) < np.mean(losses[:8]) - 0.08


def test_one_trace_serves_every_architecture(space, trained, bundle):
    net, _ = trained
    x, y = bundle.numpy("valid")
    for arch in _archs(space, 8, seed=5):
        net.score(arch, x, y, x[:64])
    net.train(*bundle.numpy("train", 64), steps=5, batch_size=16)
    assert net.traces == {"train": 1, "forward": 1}


@pytest.mark.slow
def test_training_is_deterministic_and_save_reload_gives_identical_scores(space, bundle, tmp_path):
    x, y = bundle.numpy("train", 256)
    xv, yv = bundle.numpy("valid")
    nets = [_net(space, bundle, seed=4) for _ in range(2)]
    for net in nets:
        net.train(x, y, 6, batch_size=32)
    for a, b in zip(nets[0].weights, nets[1].weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    path = str(tmp_path / "h.npz")
    nets[0].save_arrays(path, {"steps": 6})
    fresh = _net(space, bundle, seed=9)
    assert fresh.load_arrays(path) == {"steps": 6}
    for arch in _archs(space, 3):
        assert fresh.score(arch, xv, yv, x[:64]) == nets[0].score(arch, xv, yv, x[:64])


def _context(space, bundle, arch, directory):
    def unused(*args, **kwargs):
        raise AssertionError("the hypernet estimator trains no child")

    return TrialContext(
        trial_id="0",
        arch=arch,
        space=space,
        bundle=bundle,
        epochs=5,
        batch_size=32,
        best_accuracy=float("-inf"),
        completed=[],
        build=unused,
        train_epoch=unused,
        evaluate=unused,
        directory=str(directory),
    )


@pytest.mark.slow
def test_the_estimator_trains_once_saves_and_a_resumed_search_reloads(space, bundle, tmp_path):
    archs = _archs(space, 2)
    first = HyperNetEstimator(steps=8, seed=1, verbose=0)
    estimates = [first.estimate(_context(space, bundle, a, tmp_path)) for a in archs]
    assert first.train_seconds > 0 and (tmp_path / FILE).exists()
    for e in estimates:
        assert isinstance(e, Estimate) and e.model is None and e.epochs == 0
        assert 0.0 <= e.val_accuracy <= 1.0
    resumed = HyperNetEstimator(steps=8, seed=1, verbose=0)
    again = [resumed.estimate(_context(space, bundle, a, tmp_path)) for a in archs]
    assert resumed.train_seconds == 0.0  # loaded, not trained
    assert [e.val_accuracy for e in again] == [e.val_accuracy for e in estimates]
    other = HyperNetEstimator(steps=9, seed=1, verbose=0)  # other settings: trained anew
    other.estimate(_context(space, bundle, archs[0], tmp_path))
    assert other.train_seconds > 0


def test_settings_make_the_estimator_and_name_bad_values():
    made = EstimationSettings(estimator="hypernet", hypernet_steps=7).make(seed=3)
    assert isinstance(made, HyperNetEstimator) and made.steps == 7 and made.seed == 3
    made = EstimationSettings(estimator="hypernet", hypernet_seed=5).make(seed=3)
    assert made.seed == 5
    for field, value in (("hypernet_steps", 0), ("hypernet_seed", -1), ("hypernet_lr", 0.0)):
        with pytest.raises(SettingError, match=field):
            EstimationSettings(estimator="hypernet", **{field: value}).validate()
    cell = TrialSettings(
        output_dir="x", search_space="cell", estimation=EstimationSettings(estimator="hypernet")
    )
    with pytest.raises(SettingError, match="search_space"):
        cell.validate()
    strided = TrialSettings(
        output_dir="x",
        search_space="nasrl",
        space_args={"strides": [1, 2]},
        estimation=EstimationSettings(estimator="hypernet"),
    )
    with pytest.raises(SettingError, match="stride"):
        strided.validate()


@pytest.mark.parametrize(
    "kwargs, name",
    [({"steps": 0}, "steps"), ({"seed": -1}, "seed"), ({"learning_rate": 0}, "learning_rate")],
)
def test_estimator_bad_arguments_are_named(kwargs, name):
    with pytest.raises(ValueError, match=name):
        HyperNetEstimator(**kwargs)


def test_a_strided_or_other_space_is_refused(bundle):
    with pytest.raises(ValueError, match="strides"):
        HyperNet(NASRLSpace(strides=(1, 2)), bundle.input_shape, bundle.num_classes)
    with pytest.raises(ValueError, match="NASRLSpace"):
        HyperNet(object(), bundle.input_shape, bundle.num_classes)


@pytest.mark.slow
def test_a_search_scores_trials_with_the_hypernet_and_a_resume_reloads_it(tmp_path, capsys):
    out = tmp_path / "run"
    argv = [
        "kerasnas-search",
        f"--output_dir={out}",
        "--strategy=random",
        "--search_space=nasrl",
        "--max_layers=2",
        "--num_filters=4,8",
        "--filter_sizes=1,3",
        "--trial_epochs=2",
        "--batch_size=64",
        "--verbose=1",
        "--estimator=hypernet",
        "--hypernet_steps=5",
    ]
    assert search.main([*argv, "--max_trials=2"]) == 0
    assert "hypernet: trained 5 steps" in capsys.readouterr().out
    assert (out / "tuner" / FILE).exists()
    assert search.main([*argv, "--max_trials=3", "--resume"]) == 0
    printed = capsys.readouterr().out
    assert "hypernet: loaded" in printed and "hypernet: trained" not in printed
    with open(out / "history.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and all(r["estimator"] == "hypernet" for r in rows)
    assert all(float(r["epochs_trained"]) == 0 for r in rows)
    assert (out / "best.keras").exists()  # the best trial, trained when the search ends
