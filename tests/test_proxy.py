"""Lower-fidelity proxies (kerasnas.estimation.proxy): reduced resolution, width and depth;
the spaces' reductions; their settings and flags; a proxy search whose best trials are
retrained in full (--retrain_top), resumed during the retraining."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from kerasnas.cli import search
from kerasnas.errors import SettingError
from kerasnas.estimation import TrialContext
from kerasnas.estimation.proxy import LowFidelity
from kerasnas.estimation.settings import EstimationSettings
from kerasnas.jobs.settings import TrialSettings
from kerasnas.search_spaces import DiscreteCellSpace, MetaQNNSpace, NASRLSpace, SpaceError


class _Bundle:
    input_shape = (8, 8, 1)

    def train(self, epoch, batch_size, part=(0, 1)):
        return ("data", epoch, part)


def _trial(space, arch, built):
    """A TrialContext on `space` whose build records what it was asked to build."""

    def build(a, space=None, resolution=None):
        built.append((a, space, resolution))
        return "model"

    return TrialContext(
        trial_id="3",
        arch=arch,
        space=space,
        bundle=_Bundle(),
        epochs=5,
        batch_size=16,
        best_accuracy=float("-inf"),
        completed=[],
        build=build,
        train_epoch=lambda model, epoch, dataset=None: None,
        evaluate=lambda model: 0.6,
    )


# -- the spaces' reductions -----------------------------------------------------------------


def test_nasrl_width_scales_filters_and_keeps_the_rest():
    space = NASRLSpace(max_layers=4, filters=(24, 36, 48, 64), strides=(1, 2))
    arch = space.sample(np.random.default_rng(1))
    reduced_space, reduced = space.reduce(arch, width=0.5)
    assert reduced_space.filters == (12, 18, 24, 32)
    full, small = space.layers(arch), reduced_space.layers(reduced)
    assert [layer["filters"] // 2 for layer in full] == [layer["filters"] for layer in small]
    for a, b in zip(full, small, strict=True):
        assert {k: v for k, v in a.items() if k != "filters"} == {
            k: v for k, v in b.items() if k != "filters"
        }
    assert space.reduce(arch) == (space, space.validate(arch))  # nothing reduced


def test_nasrl_has_no_depth_reduction():
    space = NASRLSpace(max_layers=3)
    with pytest.raises(SpaceError, match="depth"):
        space.reduce(space.defaults(), depth=0.5)


def test_width_counts_stay_at_least_one_and_distinct():
    space = NASRLSpace(max_layers=2, filters=(4, 8))
    reduced_space, reduced = space.reduce(space.defaults(), width=0.01)
    assert reduced_space.filters == (1,) and reduced["L0/filters"] == 1


def test_metaqnn_width_and_resolution():
    space = MetaQNNSpace(max_layers=4, conv_filters=(16, 32), fc_units=(64, 32))
    arch = space.arch_from_actions(["conv_32_3", "pool_2_2", "fc_64", "fc_32", "softmax"])
    reduced_space, reduced = space.reduce(arch, width=0.5, image_size=6)
    assert reduced_space.image_size == 6
    assert reduced_space.describe(reduced)["layers"] == [
        "conv_16_3",
        "pool_2_2",
        "fc_32",
        "fc_16",
        "softmax",
    ]
    too_big = space.arch_from_actions(["conv_16_5", "softmax"])
    with pytest.raises(SpaceError, match="image size 4.*kernel 5") as e:
        space.reduce(too_big, image_size=4)
    assert e.value.decision == "layer0"


def test_cell_width_and_depth_keep_the_genotype():
    space = DiscreteCellSpace(init_channels=8, layers=5, nodes=2)
    arch = space.sample(np.random.default_rng(0))
    reduced_space, reduced = space.reduce(arch, width=0.5, depth=0.6)
    assert (reduced_space.init_channels, reduced_space.layers) == (4, 3)
    assert reduced_space.genotype(reduced) == space.genotype(arch)
    assert space.reduce(arch, width=0.01)[0].init_channels == 2  # the cell space's least


@pytest.mark.parametrize(
    "kwargs, name",
    [({"width": 0.0}, "width"), ({"depth": 1.5}, "depth"), ({"image_size": 0}, "image_size")],
)
def test_bad_reductions_are_named(kwargs, name):
    space = NASRLSpace(max_layers=2)
    with pytest.raises(ValueError, match=name):
        space.reduce(space.defaults(), **kwargs)


# -- the estimator --------------------------------------------------------------------------


def test_proxy_builds_the_reduced_child_for_the_smaller_images():
    space = NASRLSpace(max_layers=3, filters=(8, 16))
    arch = space.defaults()
    built: list = []
    estimate = LowFidelity(epochs=2, resolution=4, width_multiplier=0.5).estimate(
        _trial(space, arch, built)
    )
    [(reduced, reduced_space, resolution)] = built
    assert resolution == (4, 4) and reduced_space.filters == (4, 8)
    assert reduced == reduced_space.reduce(reduced)[1]  # a valid arch of the reduced space
    assert space.reduce(arch, width=0.5)[1] == reduced
    assert estimate.val_accuracy == 0.6 and estimate.epochs == 2


def test_proxy_at_full_fidelity_builds_the_trial_arch():
    space = NASRLSpace(max_layers=2)
    built: list = []
    LowFidelity(epochs=1, resolution=8).estimate(_trial(space, space.defaults(), built))
    assert built == [(space.defaults(), None, None)]  # 8 px of 8x8 images: no resize


def test_proxy_resolution_beyond_the_images_is_named():
    space = NASRLSpace(max_layers=2)
    with pytest.raises(ValueError, match="resolution 9 is larger than the images"):
        LowFidelity(resolution=9).estimate(_trial(space, space.defaults(), []))


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"resolution": 0}, "resolution"),
        ({"resolution": 2.5}, "resolution"),
        ({"width_multiplier": 1.5}, "width_multiplier"),
        ({"depth_multiplier": 0}, "depth_multiplier"),
    ],
)
def test_proxy_bad_arguments_are_named(kwargs, name):
    with pytest.raises(ValueError, match=name):
        LowFidelity(**kwargs)


def test_describe_lists_the_reductions():
    text = LowFidelity(2, 0.5, resolution=4, width_multiplier=0.5, depth_multiplier=0.6).describe()
    assert text == (
        "proxy: 2 epoch(s) on 0.5 of the training data, images downsampled to a side of 4 px, "
        "width x0.5, cells x0.6"
    )


# -- settings and flags ---------------------------------------------------------------------


def test_settings_make_the_reduced_proxy():
    made = EstimationSettings(
        estimator="proxy", proxy_resolution=6, proxy_width=0.5, proxy_depth=0.5
    ).make()
    assert (made.resolution, made.width_multiplier, made.depth_multiplier) == (6, 0.5, 0.5)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"proxy_width": 1.5}, "proxy_width"),
        ({"proxy_width": 0.0}, "proxy_width"),
        ({"proxy_depth": 2.0}, "proxy_depth"),
        ({"proxy_resolution": 0}, "proxy_resolution"),
    ],
)
def test_bad_estimation_settings_are_named(kwargs, name):
    with pytest.raises(SettingError, match=name):
        EstimationSettings(estimator="proxy", **kwargs).validate()


@pytest.mark.parametrize(
    "space, kwargs, name",
    [
        ("nasrl", {"proxy_depth": 0.5}, "estimation.proxy_depth"),
        ("metaqnn", {"proxy_resolution": 4}, "estimation.proxy_resolution"),
    ],
)
def test_reductions_the_space_lacks_are_refused(space, kwargs, name):
    estimation = EstimationSettings(estimator="proxy", **kwargs)
    settings = TrialSettings(output_dir="x", search_space=space, estimation=estimation)
    with pytest.raises(SettingError, match=name):
        settings.validate()
    TrialSettings(output_dir="x", search_space="cell", estimation=estimation).validate()


def test_a_bad_proxy_flag_is_one_line(capsys):
    argv = ["kerasnas-search", "--output_dir=x", "--strategy=random", "--proxy_width=1.5"]
    assert search.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--proxy_width" in err[0]


def test_retrain_top_must_not_be_negative(capsys):
    argv = ["kerasnas-search", "--output_dir=x", "--strategy=random", "--retrain_top=-1"]
    assert search.main(argv) == 2
    assert "--retrain_top" in capsys.readouterr().err


# -- models ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    from kerasnas import data

    return data.load("digits", seed=0)


_METAQNN = MetaQNNSpace(max_layers=3, conv_filters=(8,), fc_units=(16,))


@pytest.mark.slow
@pytest.mark.parametrize(
    "space, arch, width, depth, side",
    [
        (NASRLSpace(max_layers=2, filters=(8, 16), strides=(1, 2)), None, 0.5, 1.0, 4),
        (DiscreteCellSpace(init_channels=4, layers=4, nodes=1), None, 0.5, 0.75, 6),
        (_METAQNN, ["conv_8_3", "pool_2_2", "fc_16", "softmax"], 0.5, 1.0, 6),
    ],
    ids=["nasrl", "cell", "metaqnn"],
)
def test_reduced_children_build_train_and_reload(space, arch, width, depth, side, digits, tmp_path):
    import keras

    import kerasnas  # noqa: F401 (registers the custom layers for loading)
    from kerasnas.evaluate import accuracy
    from kerasnas.multitrial.hypermodel import SpaceHyperModel

    arch = space.sample(np.random.default_rng(2)) if arch is None else space.arch_from_actions(arch)
    reduced_space, reduced = space.reduce(arch, width=width, depth=depth, image_size=side)
    full = SpaceHyperModel(space, (8, 8, 1), 10, digits.normalization_layer())
    hypermodel = full.variant(reduced_space, None if side is None else (side, side))
    keras.utils.set_random_seed(0)
    hp = reduced_space.hyperparameters()
    hp.values.update(reduced)
    model = hypermodel.build(hp)
    assert model.input_shape == (None, 8, 8, 1)
    if side is not None:
        assert model.get_layer("proxy_resize").output.shape[1:3] == (side, side)
    hp_full = space.hyperparameters()
    hp_full.values.update(space.validate(arch))
    assert model.count_params() < full.build(hp_full).count_params()
    model.fit(digits.train(0, 128).take(3), verbose=0)
    acc = accuracy(model, digits.valid(128))
    assert 0.0 <= acc <= 1.0
    path = str(tmp_path / "m.keras")
    model.save(path)
    x, _ = digits.numpy("valid", 16)
    np.testing.assert_allclose(
        keras.models.load_model(path).predict(x, verbose=0),
        model.predict(x, verbose=0),
        rtol=1e-5,
        atol=1e-5,
    )


def test_resolution_beyond_the_data_is_refused_before_the_search(tmp_path, capsys):
    argv = [
        "kerasnas-search",
        f"--output_dir={tmp_path / 'run'}",
        "--strategy=random",
        "--search_space=nasrl",
        "--estimator=proxy",
        "--proxy_resolution=9",
        "--verbose=0",
    ]
    assert search.main(argv) == 2
    err = capsys.readouterr().err
    assert "--proxy_resolution" in err and "8x8" in err
    assert not os.path.exists(tmp_path / "run" / "tuner")


# -- a proxy search, its best trials retrained ----------------------------------------------


@pytest.mark.slow
def test_a_proxy_search_retrains_its_top_trials_and_resumes_the_retraining(tmp_path):
    import keras

    import kerasnas  # noqa: F401

    out = tmp_path / "run"
    argv = [
        "kerasnas-search",
        f"--output_dir={out}",
        "--strategy=random",
        "--search_space=nasrl",
        "--max_layers=2",
        "--num_filters=4,8",
        "--filter_sizes=1,3",
        "--max_trials=3",
        "--trial_epochs=2",
        "--batch_size=128",
        "--verbose=0",
        "--estimator=proxy",
        "--proxy_epochs=1",
        "--proxy_resolution=4",
        "--proxy_width=0.5",
        "--retrain_top=2",
    ]
    assert search.main(argv) == 0
    with open(out / "metrics.json", encoding="utf-8") as f:
        metrics = json.load(f)
    retrained = metrics["retrained"]
    assert [r["epochs"] for r in retrained] == [2, 2] and metrics["best_model"] == "retrained"
    assert retrained[0]["reward"] >= retrained[1]["reward"]
    chosen = max(retrained, key=lambda r: r["val_accuracy"])
    assert metrics["best_trial_id"] == chosen["trial_id"]
    assert metrics["best_valid_accuracy"] == chosen["val_accuracy"]
    assert metrics["best_test_accuracy"] == chosen["test_accuracy"]
    assert metrics["best_estimate_accuracy"] == chosen["estimate_accuracy"]
    assert metrics["total_seconds"] == pytest.approx(
        metrics["search_seconds"] + metrics["retrain_seconds"], abs=0.02
    )
    # best.keras is the full architecture: full width, full resolution
    model = keras.models.load_model(out / "best.keras")
    with open(out / "architecture.json", encoding="utf-8") as f:
        layers = json.load(f)["layers"]
    assert "proxy_resize" not in [layer.name for layer in model.layers]
    assert [model.get_layer(f"L{n}_conv").filters for n in range(len(layers))] == [
        layer["filters"] for layer in layers
    ]
    trial_model = keras.models.load_model(
        next(
            os.path.join(out, "tuner", d, "model.keras")
            for d in sorted(os.listdir(out / "tuner"))
            if os.path.exists(os.path.join(out, "tuner", d, "model.keras"))
        )
    )
    assert "proxy_resize" in [layer.name for layer in trial_model.layers]  # the proxy's

    # stopped during the retraining: the second trial's retraining and metrics.json missing
    first, second = (out / "retrain" / f"trial_{r['trial_id']}" for r in retrained)
    os.remove(second / "result.json")
    os.remove(out / "metrics.json")
    trials = sorted(str(p) for p in (out / "tuner").glob("trial_*/result.json"))
    stamps = {p: os.stat(p).st_mtime_ns for p in [*trials, str(first / "result.json")]}
    assert search.main([*argv, "--resume"]) == 0
    assert {p: os.stat(p).st_mtime_ns for p in stamps} == stamps  # no trial, no retrain again
    with open(out / "metrics.json", encoding="utf-8") as f:
        again = json.load(f)
    assert [r["val_accuracy"] for r in again["retrained"]] == [
        r["val_accuracy"] for r in retrained
    ]  # the same seed: the same retrained accuracy
    assert again["best_trial_id"] == metrics["best_trial_id"]
