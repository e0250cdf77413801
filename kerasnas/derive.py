"""Derivation for any Keras model with MixedOp layers: replace each MixedOp by its argmax op.

For the cell space, :meth:`kerasnas.search_spaces.CellSpace.derive` gives a genotype and
:meth:`~kerasnas.search_spaces.CellSpace.build_child` the child; this module handles every
other model, e.g. a user's CNN whose layers each choose a kernel size.
"""

from __future__ import annotations

import keras

from kerasnas.layers import MixedOp, mixed_ops


def choices(model: keras.Model) -> dict[str, str]:
    """{MixedOp layer name: name of its argmax candidate} for every MixedOp in `model`."""
    return {layer.name: layer.candidate_names[layer.chosen_index()] for layer in mixed_ops(model)}


def derive_model(model: keras.Model) -> keras.Model:
    """A plain Keras model in which every MixedOp is replaced by its argmax candidate.

    Works on functional and Sequential models. The new model has fresh layers (no variable
    is shared with `model`) that carry `model`'s trained weights; each replacement layer is
    named like the MixedOp it replaces. Its outputs equal ``model(x, training=False)`` with
    MixedOps at their default ``inference="argmax"``.
    """
    if not mixed_ops(model):
        raise ValueError("derive_model: the model has no MixedOp layer")
    if not isinstance(model, keras.Sequential) and not _is_functional(model):
        raise ValueError(
            "derive_model: only functional and Sequential models can be rebuilt; for a "
            "subclassed model, call MixedOp.chosen_op() on each layer instead"
        )
    nested = [m for m in mixed_ops(model) if not any(m is layer for layer in model.layers)]
    if nested:
        raise ValueError(
            f"derive_model: MixedOp {nested[0].name!r} is inside a nested layer or model; "
            f"only MixedOps that are layers of the model itself can be replaced"
        )

    def clone(layer):
        if isinstance(layer, MixedOp):
            chosen = layer.chosen_op()
            config = chosen.get_config()
            config["name"] = layer.name
            return chosen.__class__.from_config(config)
        return layer.__class__.from_config(layer.get_config())

    child = keras.models.clone_model(model, clone_function=clone)
    if len(child.layers) != len(model.layers):
        raise ValueError("derive_model: the rebuilt model's layers do not match the original")
    for original, target in zip(model.layers, child.layers, strict=True):
        source = original.chosen_op() if isinstance(original, MixedOp) else original
        if source.weights:
            target.set_weights(source.get_weights())
    return child


def _is_functional(model: keras.Model) -> bool:
    return hasattr(model, "_nodes_by_depth") or type(model).__name__ == "Functional"
