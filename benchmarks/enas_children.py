"""Does ENAS' controller pick better children than uniform sampling, on the same weights?

    python benchmarks/enas_children.py cmp/runs/enas_seed0/search [--children=10]

Takes a finished (or stopped) ENAS search directory, restores its shared weights and
controller from the checkpoint, and scores `--children` children of the controller and as
many uniform children (two different inputs per node, one op each) on the whole validation
split, each after batch-norm recalibration on 8 training batches, as the search scores its
final candidates. Prints both lists and their means.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import tempfile

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="an ENAS search output directory")
    parser.add_argument("--children", type=int, default=10)
    args = parser.parse_args()

    import keras
    import tensorflow as tf

    from kerasnas.jobs.one_shot import OneShotSearch, OneShotSettings
    from kerasnas.latency import cpu_model
    from kerasnas.trainers.enas import ENASConfig, RandomWSTrainer

    cpu = cpu_model()
    print(f"{cpu}, {os.cpu_count()} CPUs; TensorFlow {tf.__version__}, Keras {keras.__version__}")
    with open(os.path.join(args.run, "metrics.json"), encoding="utf-8") as f:
        settings = dict(json.load(f)["settings"])
    config = ENASConfig(**settings.pop("config"))
    names = {f.name for f in dataclasses.fields(OneShotSettings)} - {
        "output_dir",
        "config",
        "resume",
        "overwrite",
    }
    kept = {k: tuple(v) if isinstance(v, list) else v for k, v in settings.items() if k in names}
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(os.path.join(args.run, "checkpoints"), os.path.join(tmp, "checkpoints"))
        job = OneShotSearch(OneShotSettings(**kept, output_dir=tmp, config=config, resume=True))
        job.seed_everything()
        job.bundle = job.load_data()
        job.prepare()
        trainer = job.trainer
        epochs = trainer.restore()
        rng = np.random.default_rng([config.seed, 12345])
        valid = job.bundle.valid(config.batch_size)
        ours = trainer.sample_archs(args.children, rng)
        uniform = RandomWSTrainer.sample_archs(trainer, args.children, rng)
        scores = {
            "controller": [trainer.child_accuracy(a, valid, job.bundle) for a in ours],
            "uniform": [trainer.child_accuracy(a, valid, job.bundle) for a in uniform],
        }
    print(f"{args.run}: shared weights after {epochs} epochs")
    for kind, accs in scores.items():
        shown = " ".join(f"{a:.3f}" for a in accs)
        print(f"  {kind:<10} {shown}  mean {np.mean(accs):.3f}")


if __name__ == "__main__":
    main()
