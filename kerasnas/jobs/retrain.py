"""The retraining job: a genotype trained from scratch, as the DARTS/SNAS papers do for
their final numbers (what ``kerasnas-train`` runs).

  kerasnas-train --genotype=run/genotype.json --output_dir=retrain      # digits, small budget
  kerasnas-train --genotype=DARTS_V2 --dataset=tfds:cifar10 --init_channels=36 --layers=20 \\
      --epochs=600 --batch_size=96 --auxiliary --drop_path=0.2 --cutout=16 --output_dir=c10
  kerasnas-train --genotype=run/genotype.json --output_dir=retrain --resume   # continue

``kerasnas-train --helpfull`` lists every flag. Also the Python entry point
(:func:`run_train`). Output directory (every file written atomically, ``metrics.json`` last,
so its presence means the run finished):

- ``model.keras``: the inference network; takes raw images (normalisation is its first
  layer) and returns logits; no auxiliary head, no DropPath layers;
- ``genotype.json``: the architecture that was trained;
- ``history.json``: one record per epoch (losses, accuracies, learning rate, drop-path rate);
- ``metrics.json``: test and valid accuracy, params, mult-adds, seconds, settings;
- ``tensorboard/``, ``checkpoints/`` (the latter lets ``--resume`` continue a stopped run to
  the result of an uninterrupted one).

The flags live in this command's own flag set (:class:`kerasnas.cli.Command`), not absl's
global one, so this module and :mod:`kerasnas.search` can be imported together.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

import numpy as np

from kerasnas.trainers.retrain import RetrainConfig

PUBLISHED = ("DARTS_V1", "DARTS_V2")
RESULT_FILES = ("model.keras", "genotype.json", "history.json", "metrics.json")


def default_retrain_config(**overrides: Any) -> RetrainConfig:
    """The command line's defaults: a budget for the 8x8 digits that takes about two minutes
    on 2 cores (the papers, on CIFAR-10: 600 epochs, batch 96, lr 0.025, auxiliary weight
    0.4, drop-path 0.2, cutout 16; see :class:`RetrainConfig`)."""
    return RetrainConfig(
        **{"epochs": 20, "batch_size": 64, "drop_path": 0.2, "cutout": 0, **overrides}
    )


@dataclasses.dataclass
class RetrainSettings:
    """Everything a retraining run needs. Sizes: C = init_channels, L = layers.

    genotype: a genotype JSON file, or ``DARTS_V1`` / ``DARTS_V2`` (the published cells).
    """

    genotype: str
    output_dir: str
    dataset: str = "digits"
    init_channels: int = 16
    layers: int = 8
    auxiliary: bool = False
    valid_fraction: float = 0.2
    test_fraction: float = 0.2
    resume: bool = False
    overwrite: bool = False
    deterministic: bool = True
    verbose: int = 1
    retrain: RetrainConfig = dataclasses.field(default_factory=lambda: default_retrain_config())


class TrainError(ValueError):
    """A retraining run cannot start: the message says which flag or file is wrong."""


def load_genotype(spec: str):
    """A published genotype by name (``DARTS_V1``, ``DARTS_V2``) or a genotype JSON file."""
    from kerasnas import genotype as genotype_lib

    if spec in PUBLISHED:
        return getattr(genotype_lib, spec)
    if not spec:
        raise TrainError("--genotype is required: a genotype JSON file, DARTS_V1 or DARTS_V2")
    if not os.path.isfile(spec):
        raise TrainError(
            f"--genotype {spec!r}: no such file (give a genotype JSON file, DARTS_V1 or DARTS_V2)"
        )
    try:
        return genotype_lib.Genotype.load(spec)
    except (OSError, ValueError) as e:
        raise TrainError(f"--genotype {spec!r}: {e}") from None


def _preprocessing(bundle):
    """The bundle's normalisation layer under a fixed name (so weights copy by name)."""
    layer = bundle.normalization_layer()
    return type(layer).from_config({**layer.get_config(), "name": "normalization"})


def run_train(settings: RetrainSettings) -> dict[str, Any]:
    """Retrains ``settings.genotype`` from scratch and writes the output directory (see the
    module doc); returns the metrics. Raises TrainError (or kerasnas.data.DataError) on bad
    input before anything is written."""
    import keras
    import tensorflow as tf

    from kerasnas import data as data_lib
    from kerasnas import io, resource
    from kerasnas.search_spaces.cell import build_network
    from kerasnas.trainers.base import CheckpointError, accuracy
    from kerasnas.trainers.retrain import RetrainTrainer, copy_weights

    cfg = settings.retrain
    try:
        cfg.validate()
    except ValueError as e:
        raise TrainError(f"invalid setting: {e}") from None
    genotype = load_genotype(settings.genotype)
    try:
        bundle = data_lib.load(
            settings.dataset,
            seed=cfg.seed,
            valid_fraction=settings.valid_fraction,
            test_fraction=settings.test_fraction,
        )
    except data_lib.DataError as e:
        raise TrainError(f"--dataset {settings.dataset!r}: {e}") from None
    keras.utils.set_random_seed(cfg.seed)
    if settings.deterministic:
        tf.config.experimental.enable_op_determinism()
    log = print if settings.verbose else (lambda *a, **k: None)

    def network(auxiliary: bool, drop_path: float) -> keras.Model:
        return build_network(
            genotype,
            bundle.num_classes,
            bundle.input_shape,
            init_channels=settings.init_channels,
            layers=settings.layers,
            auxiliary=auxiliary,
            drop_path=drop_path,
            preprocessing=_preprocessing(bundle),
        )

    try:
        model = network(settings.auxiliary, cfg.drop_path)
    except ValueError as e:
        raise TrainError(f"invalid setting: {e}") from None
    try:  # only once the inputs are known to be good
        io.prepare_output_dir(
            settings.output_dir, resume=settings.resume, overwrite=settings.overwrite
        )
    except io.OutputDirError as e:
        raise TrainError(str(e)) from None
    log(
        f"data {bundle.name}: {bundle.num_train} train / {bundle.num_valid} valid / "
        f"{bundle.num_test} test images of {bundle.input_shape}, {bundle.num_classes} classes"
    )
    log(
        f"network: C={settings.init_channels} L={settings.layers}, "
        f"{model.count_params():,} params (training form), auxiliary {settings.auxiliary}, "
        f"drop_path {cfg.drop_path}, cutout {cfg.cutout}"
    )
    run_info = {
        "genotype": genotype.to_dict(),
        "dataset": bundle.name,
        "init_channels": settings.init_channels,
        "layers": settings.layers,
        "auxiliary": settings.auxiliary,
        "valid_fraction": settings.valid_fraction,
        "test_fraction": settings.test_fraction,
    }
    trainer = RetrainTrainer(model, cfg, settings.output_dir, settings.verbose, run_info)
    t0 = time.perf_counter()
    try:
        history = trainer.fit(bundle, resume=settings.resume)
    except CheckpointError as e:
        raise TrainError(f"--resume: {e}") from None
    log(
        f"training done: {trainer.seconds:.0f} s of training in all, "
        f"{time.perf_counter() - t0:.0f} s in this run"
    )

    # The inference network: no auxiliary head, no DropPath, the trained weights.
    clean = network(False, 0.0)
    copy_weights(model, clean)
    x_check, _ = bundle.numpy("valid", limit=cfg.batch_size)
    want = trainer.logits_of(model(x_check, training=False))
    got = clean(x_check, training=False)
    diff = float(np.max(np.abs(keras.ops.convert_to_numpy(want - got))))
    if diff > 1e-4:
        raise RuntimeError(f"inference model differs from the trained one (max |diff| {diff})")

    cost = resource.network_cost(clean)
    batch = cfg.batch_size
    metrics = {
        "test_accuracy": accuracy(clean, bundle.test(batch)),
        "valid_accuracy": accuracy(clean, bundle.valid(batch)),
        "params": int(cost.params),
        "flops": int(cost.flops),  # mult-adds per image
        "mac": int(cost.mac),
        "seconds": round(trainer.seconds, 2),
        "epochs": cfg.epochs,
        "seed": cfg.seed,
        "dataset": bundle.name,
        "final_train_loss": history[-1]["loss"] if history else None,
        "final_train_accuracy": history[-1]["accuracy"] if history else None,
        "genotype": genotype.to_dict(),
        "settings": {**dataclasses.asdict(settings), "retrain": dataclasses.asdict(cfg)},
    }
    out = settings.output_dir
    with io.atomic_path(os.path.join(out, "model.keras")) as tmp:
        clean.save(tmp)
    genotype.save(os.path.join(out, "genotype.json"))
    io.write_json(os.path.join(out, "history.json"), history)
    io.write_json(os.path.join(out, "metrics.json"), metrics)
    log(
        f"valid {metrics['valid_accuracy']:.4f}, test {metrics['test_accuracy']:.4f}, "
        f"{metrics['params']:,} params, {metrics['flops']:,} mult-adds -> {out}"
    )
    return metrics
