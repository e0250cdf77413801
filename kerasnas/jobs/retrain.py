"""The retraining job: a genotype trained from scratch, as the DARTS/SNAS papers do for
their final numbers (what ``kerasnas-train`` runs).

:func:`run_train` is the Python entry point. Output directory (every file written
atomically, ``metrics.json`` last, so its presence means the run finished):

- ``model.keras``: the inference network; takes raw images (normalisation is its first
  layer) and returns logits; no auxiliary head, no DropPath layers;
- ``genotype.json``: the architecture that was trained;
- ``history.json``: one record per epoch (losses, accuracies, learning rate, drop-path rate);
- ``metrics.json``: test and valid accuracy, params, mult-adds, seconds, settings;
- ``tensorboard/``, ``checkpoints/`` (the latter lets ``resume=True`` continue a stopped
  run to the result of an uninterrupted one).
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

import keras
import numpy as np

from kerasnas import io, resource, summary
from kerasnas.errors import SettingError
from kerasnas.evaluate import accuracy
from kerasnas.genotype import Genotype
from kerasnas.jobs.base import Job
from kerasnas.jobs.settings import PUBLISHED, RetrainSettings, default_retrain_config

__all__ = ["PUBLISHED", "Retrain", "RetrainSettings", "default_retrain_config", "run_train"]

RESULT_FILES = ("model.keras", "genotype.json", "history.json", "metrics.json")


def load_genotype(spec: str) -> Genotype:
    """A published genotype by name (``DARTS_V1``, ``DARTS_V2``) or a genotype JSON file."""
    from kerasnas import genotype as genotype_lib

    if spec in PUBLISHED:
        return getattr(genotype_lib, spec)
    if not spec:
        raise SettingError("{genotype} is required: a genotype JSON file, DARTS_V1 or DARTS_V2")
    if not os.path.isfile(spec):
        raise SettingError(
            f"{{genotype}} {spec!r}: no such file (give a genotype JSON file, DARTS_V1 or DARTS_V2)"
        )
    try:
        return genotype_lib.Genotype.load(spec)
    except (OSError, ValueError) as e:
        raise SettingError(f"{{genotype}} {spec!r}: {e}") from None


def _preprocessing(bundle):
    """The bundle's normalisation layer under a fixed name (so weights copy by name)."""
    layer = bundle.normalization_layer()
    return type(layer).from_config({**layer.get_config(), "name": "normalization"})


class Retrain(Job):
    """The retraining job (see the module doc)."""

    def prepare(self) -> None:
        s, cfg = self.settings, self.settings.retrain
        self.genotype = load_genotype(s.genotype)
        self.model = self.network(s.auxiliary, cfg.drop_path)

    def network(self, auxiliary: bool, drop_path: float) -> keras.Model:
        from kerasnas.search_spaces.cell import build_network

        s, bundle = self.settings, self.bundle
        try:
            return build_network(
                self.genotype,
                bundle.num_classes,
                bundle.input_shape,
                init_channels=s.init_channels,
                layers=s.layers,
                auxiliary=auxiliary,
                drop_path=drop_path,
                preprocessing=_preprocessing(bundle),
            )
        except ValueError as e:
            if isinstance(e, SettingError):
                raise
            raise SettingError(str(e)) from None

    def execute(self) -> tuple[dict[str, Any], Any, str]:
        from kerasnas.trainers.retrain import RetrainTrainer, copy_weights

        s, cfg, bundle, model = self.settings, self.settings.retrain, self.bundle, self.model
        self.log(
            f"network: C={s.init_channels} L={s.layers}, "
            f"{model.count_params():,} params (training form), auxiliary {s.auxiliary}, "
            f"drop_path {cfg.drop_path}, cutout {cfg.cutout}"
        )
        run_info = {
            "genotype": self.genotype.to_dict(),
            "dataset": bundle.name,
            "init_channels": s.init_channels,
            "layers": s.layers,
            "auxiliary": s.auxiliary,
            "valid_fraction": s.valid_fraction,
            "test_fraction": s.test_fraction,
        }
        trainer = RetrainTrainer(model, cfg, s.output_dir, s.verbose, run_info)
        t0 = time.perf_counter()
        history = trainer.fit(bundle, resume=s.resume)
        self.log(
            f"training done: {trainer.seconds:.0f} s of training in all, "
            f"{time.perf_counter() - t0:.0f} s in this run"
        )

        # The inference network: no auxiliary head, no DropPath, the trained weights.
        clean = self.network(False, 0.0)
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
            **trainer.budget_summary(),
            "epochs": cfg.epochs,
            "seed": cfg.seed,
            "dataset": bundle.name,
            "final_train_loss": history[-1]["train_loss"] if history else None,
            "final_train_accuracy": history[-1]["train_acc"] if history else None,
            "genotype": self.genotype.to_dict(),
            "settings": {**dataclasses.asdict(s), "retrain": dataclasses.asdict(cfg)},
        }
        out = s.output_dir
        with io.atomic_path(os.path.join(out, "model.keras")) as tmp:
            clean.save(tmp)
        self.genotype.save(os.path.join(out, "genotype.json"))
        io.write_json(os.path.join(out, "history.json"), history)
        return metrics, None, "model.keras"

    def summary(self, metrics: dict[str, Any]) -> str:
        return summary.retrain(metrics, self.settings.output_dir)


def run_train(settings: RetrainSettings) -> dict[str, Any]:
    """Retrains ``settings.genotype`` from scratch and writes the output directory (see the
    module doc); returns the metrics. Raises SettingError on bad input before anything is
    written."""
    with Retrain(settings) as job:
        return job.run()
