"""Weight inheritance through network morphisms as an estimator (``--estimator=morphism``):
a child starts from its trained parent's weights and is trained briefly (Elsken et al.:
NASH 2017, LEMONADE 2019; Net2Net, Chen et al. 2016).

A trial's lineage travels with the trial itself, as two extra entries of its
hyperparameter values (keras-tuner keeps them through ``create_trial``, ``trial.json`` and
``--resume``, as it keeps Hyperband's ``tuner/trial_id``):

- ``morphism/parent``: the id of the completed trial whose weights the child starts from;
- ``morphism/ops``: a JSON list of the :class:`~kerasnas.estimation.morphism.Morphism`
  applied to the parent's architecture in turn (``[]``: the parent itself, trained further).

A morphism-based oracle (``nash``, ``lemonade``) writes them (:func:`lineage_values`); the
:class:`MorphismInheritance` estimator reads them (:func:`lineage`). For a trial with a
lineage it loads the parent's trained model (kept by the runner: ``keeps_models``), builds
every intermediate architecture, passes the weights through each morphism in turn
(:func:`~kerasnas.estimation.morphism.inherit`: the child computes what the parent computes,
at inference), trains the child `epochs` epochs and reports its validation accuracy with
``inherited_from`` = the parent. A trial without a lineage (the first trials, any other
oracle's proposals) trains from scratch for the trial's full epochs, like ``full``.

Supported: the spaces :mod:`~kerasnas.estimation.morphism` supports (``nasrl``). This module
uses only that module's public functions (``morphisms``, ``apply``, ``inherit``) and does
not import TensorFlow itself.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from kerasnas.estimation import morphism
from kerasnas.estimation.base import Estimate, Estimator, TrialContext
from kerasnas.estimation.morphism import Morphism

__all__ = [
    "OPS",
    "PARENT",
    "MorphismInheritance",
    "decode",
    "encode",
    "lineage",
    "lineage_values",
    "random_child",
]

PARENT = "morphism/parent"
OPS = "morphism/ops"


def _tuples(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def encode(ops: Sequence[Morphism]) -> str:
    """The JSON of a list of morphisms (each an object of its fields)."""
    return json.dumps(
        [{f.name: getattr(m, f.name) for f in dataclasses.fields(m)} for m in ops],
        separators=(",", ":"),
    )


def decode(text: str) -> list[Morphism]:
    """The morphisms of :func:`encode`'s JSON (lists read back as tuples)."""
    return [Morphism(**{k: _tuples(v) for k, v in item.items()}) for item in json.loads(text)]


def lineage_values(parent: str, ops: Sequence[Morphism]) -> dict[str, str]:
    """The extra hyperparameter values of a child of trial `parent` by `ops`."""
    return {PARENT: str(parent), OPS: encode(ops)}


def lineage(values: Mapping[str, Any]) -> tuple[str | None, list[Morphism]]:
    """(parent trial id, morphisms) of a trial's hyperparameter values; (None, []) without a
    lineage."""
    if PARENT not in values:
        return None, []
    return str(values[PARENT]), decode(values.get(OPS, "[]"))


def random_child(
    space,
    arch: Mapping[str, Any],
    n_ops: int,
    image_hw: tuple[int, int],
    rng: np.random.Generator,
) -> tuple[dict[str, Any], list[Morphism]]:
    """`arch` changed by up to `n_ops` random morphisms in turn, and the morphisms: each
    step picks a kind uniformly among the kinds that apply, then one morphism of that kind
    uniformly (so that the many ``widen``/``kernel`` choices do not crowd out ``deepen`` and
    ``skip``). Stops early when none applies."""
    child, ops = dict(arch), []
    for _ in range(n_ops):
        found = morphism.morphisms(space, child, image_hw)
        if not found:
            break
        kinds = sorted({m.kind for m in found})
        kind = kinds[int(rng.integers(len(kinds)))]
        choices = [m for m in found if m.kind == kind]
        m = choices[int(rng.integers(len(choices)))]
        child = morphism.apply(space, child, m)
        ops.append(m)
    return child, ops


class MorphismInheritance(Estimator):
    """Trains a child from its parent's weights, passed through its morphisms (module doc).

    Args:
      epochs: epochs of training of a child with a parent, >= 1 (NASH and LEMONADE train
        children briefly compared with training from scratch).
      seed: seeds the filters ``widen`` copies (with the trial id).
    """

    name = "morphism"
    keeps_models = True

    def __init__(self, epochs: int = 1, seed: int = 0):
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"MorphismInheritance: epochs must be an int >= 1, got {epochs!r}")
        self.epochs = epochs
        self.seed = int(seed)

    def describe(self) -> str:
        return (
            f"morphism: children inherit their parent's weights, then {self.epochs} "
            "epoch(s); trials without a parent train in full"
        )

    def inherited(self, trial: TrialContext):
        """(model, parent id) of a trial with a lineage: the child model with its parent's
        weights passed through every morphism, untrained; None when the trial has no
        lineage or the parent's model was not kept."""
        parent_id, ops = lineage(trial.values)
        if parent_id is None:
            return None
        record = next((r for r in trial.completed if str(r["trial_id"]) == parent_id), None)
        model = trial.load_model(parent_id) if record is not None else None
        if model is None:
            warnings.warn(
                f"trial {trial.trial_id}: parent trial {parent_id}'s model is not available; "
                "training from scratch",
                stacklevel=2,
            )
            return None
        space = trial.space
        arch = space.from_description(record["architecture"])
        rng = np.random.default_rng(zlib.crc32(f"{self.seed}/{trial.trial_id}".encode()))
        if not ops:
            child = trial.build(arch)
            child.set_weights(model.get_weights())
        for m in ops:
            child_arch = morphism.apply(space, arch, m)
            child = trial.build(child_arch)
            morphism.inherit(space, arch, model, m, child, rng)
            arch, model = child_arch, child
        if space.key(arch) != space.key(trial.arch):
            raise ValueError(
                f"trial {trial.trial_id}: the morphisms of trial {parent_id} give "
                f"{space.describe(arch)}, not the trial's architecture"
            )
        return child, parent_id

    def estimate(self, trial: TrialContext) -> Estimate:
        found = self.inherited(trial)
        if found is None:
            model = trial.build(trial.arch)
            for epoch in range(trial.epochs):
                trial.train_epoch(model, epoch)
            return Estimate(trial.evaluate(model), model, trial.epochs)
        model, parent_id = found
        for epoch in range(self.epochs):
            trial.train_epoch(model, epoch)
        return Estimate(trial.evaluate(model), model, self.epochs, inherited_from=parent_id)
