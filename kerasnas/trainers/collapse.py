"""The collapse guard of one-shot searches: the figures that foretell a collapse into
parameter-free cells, and the rule that stops the search before it (DARTS-ES).

Figures (per epoch, in the ``architecture`` group of the epoch line and TensorBoard):

- ``hessian_eigenvalue``: the dominant eigenvalue of the Hessian of the validation loss
  with respect to the architecture logits (every logits variable of the model, flattened
  together), by power iteration on exact Hessian-vector products
  (:func:`dominant_eigenvalue`); ``hessian_convergence`` is the relative change of the
  estimate over the last iteration. Zela et al. (ICLR 2020, "Understanding and Robustifying
  Differentiable Architecture Search") showed that it grows as DARTS degenerates.
- ``param_free_share`` (and ``param_free_share/normal``, ``/reduce``): the share of the
  derived child's edges that carry no parameters (:func:`parameter_free_share`).
- ``entropy``: the mean edge entropy, which :meth:`OneShotTrainer.arch_summary` records.

:class:`CollapseGuard` turns them into a stop (``--collapse_guard``), keeping the logits of
an earlier epoch so that the job derives that epoch's architecture;
:class:`CollapseWatch` measures the figures for a trainer and holds the guard.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from kerasnas.layers import MixedOp, arch_variables, mixed_ops

__all__ = [
    "CollapseGuard",
    "CollapseWatch",
    "HessianProbe",
    "dominant_eigenvalue",
    "parameter_free_share",
]

EIGENVALUE = "hessian_eigenvalue"
CONVERGENCE = "hessian_convergence"
SHARE = "param_free_share"
KINDS = ("normal", "reduce")


# -- the Hessian --------------------------------------------------------------------------
class HessianProbe:
    """Exact derivatives of a supernet's validation loss with respect to its architecture
    logits, all logits variables flattened into one vector of length :attr:`size`.

    The loss of a batch (x (B, H, W, C), y (B,)) is the mean cross-entropy of the logits,
    computed with batch norm in **training mode** (each batch's own statistics), as the
    DARTS search code evaluates its architecture loss and as Zela et al. compute the
    Hessian; the moving averages that training mode updates are put back after every
    call, so a measurement leaves the model as it found it. Every MixedOp mixes its
    candidates by **softmax(alpha)** during the calls, whatever its relaxation: for Gumbel
    relaxations (SNAS) the loss of a fresh sample is a random function of the logits, and
    the Hessian of the deterministic mixture is the one defined. The functions are
    ``tf.function``\\ s traced once per probe (batch size may vary).

    Args:
      model: a Keras model with MixedOp layers whose (first) output is logits.
      arch_vars: the variables to differentiate by (default: every architecture logits
        variable of `model`, as :func:`kerasnas.layers.arch_variables` lists them).
    """

    def __init__(self, model: keras.Model, arch_vars: Sequence | None = None):
        self.model = model
        self.mixed = mixed_ops(model)
        self.arch_vars = list(arch_vars) if arch_vars is not None else arch_variables(model)
        self.shapes = [tuple(v.shape) for v in self.arch_vars]
        self.sizes = [int(np.prod(s)) for s in self.shapes]
        self.size = int(sum(self.sizes))
        self.dtype = tf.as_dtype(self.arch_vars[0].dtype)  # of the loss and the vectors
        spec = tf.TensorSpec((None, *model.inputs[0].shape[1:]))
        labels = tf.TensorSpec((None,), tf.int32)
        vector = tf.TensorSpec((self.size,), self.dtype)
        self._grad_fn = tf.function(self._gradient, input_signature=[spec, labels])
        self._hvp_fn = tf.function(self._hvp, input_signature=[spec, labels, vector])

    # the traced bodies
    def _loss(self, x, y):
        outputs = self.model(x, training=True)
        logits = outputs[0] if isinstance(outputs, (list, tuple)) else outputs
        logits = tf.cast(logits, self.dtype)
        return tf.reduce_mean(
            keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
        )

    def _flat(self, tensors):
        return tf.concat(
            [
                tf.reshape(tf.zeros(s, self.dtype) if t is None else tf.cast(t, self.dtype), [-1])
                for t, s in zip(tensors, self.shapes, strict=True)
            ],
            0,
        )

    def _gradient(self, x, y):
        with tf.GradientTape() as tape:
            loss = self._loss(x, y)
        return loss, self._flat(tape.gradient(loss, self.arch_vars))

    def _hvp(self, x, y, v):
        # reverse over reverse: d/dalpha (dL/dalpha . v), v held constant
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                loss = self._loss(x, y)
            grad = self._flat(inner.gradient(loss, self.arch_vars))
            dot = tf.reduce_sum(grad * tf.stop_gradient(v))
        return self._flat(outer.gradient(dot, self.arch_vars))

    def _run(self, fn, *args):
        """Calls a traced function with every MixedOp mixing by softmax (read when it is
        traced) and the non-trainable variables (batch-norm averages) restored after."""
        frozen = self.model.non_trainable_variables
        saved = [v.numpy() for v in frozen]
        relaxations = [m.relaxation for m in self.mixed]
        for m in self.mixed:
            m.relaxation = "softmax"
        try:
            return fn(*args)
        finally:
            for m, r in zip(self.mixed, relaxations, strict=True):
                m.relaxation = r
            for v, value in zip(frozen, saved, strict=True):
                v.assign(value)

    # the public calls: means over `batches`, a list of (x, y)
    def gradient(self, batches: Sequence) -> tuple[float, np.ndarray]:
        """(mean loss, mean gradient (size,)) over `batches`."""
        losses, grads = zip(*(self._run(self._grad_fn, x, y) for x, y in batches), strict=True)
        return float(np.mean(losses)), np.mean([g.numpy() for g in grads], axis=0)

    def hvp(self, batches: Sequence, v: np.ndarray) -> np.ndarray:
        """The Hessian of the mean loss over `batches` times the vector `v` (size,)."""
        v = tf.constant(np.asarray(v), self.dtype)
        return np.mean([self._run(self._hvp_fn, x, y, v).numpy() for x, y in batches], axis=0)

    def dominant_eigenvalue(
        self, batches: Sequence, iterations: int = 20, seed: int = 0
    ) -> tuple[float, float]:
        """Power iteration on :meth:`hvp` from a seeded random unit vector (normal, then
        normalised): `iterations` products; returns (the Rayleigh quotient v.Hv of the last
        unit vector, the relative change of that estimate over the last iteration).

        Power iteration converges to the eigenvalue of largest **magnitude**, which may be
        negative (a saddle): the sign is kept. Convergence is geometric in the ratio of the
        two largest magnitudes; a convergence figure above ~1e-2 means the estimate is
        rough (two nearly equal magnitudes, or too few iterations)."""
        if iterations < 1:
            raise ValueError(f"dominant_eigenvalue: iterations must be >= 1, got {iterations}")
        v = np.random.default_rng(seed).standard_normal(self.size)
        v /= np.linalg.norm(v)
        estimate, change = 0.0, math.inf
        for _ in range(iterations):
            hv = self.hvp(batches, v)
            new = float(v @ hv)
            change = abs(new - estimate) / max(abs(new), 1e-12)
            estimate = new
            norm = float(np.linalg.norm(hv))
            if norm == 0.0:  # v is in the null space: the Hessian is zero along it
                return 0.0, 0.0
            v = hv / norm
        return estimate, change


def dominant_eigenvalue(
    model: keras.Model,
    batches: Sequence,
    iterations: int = 20,
    seed: int = 0,
    probe: HessianProbe | None = None,
) -> tuple[float, float]:
    """(dominant eigenvalue, relative change over the last iteration) of the Hessian of the
    mean validation cross-entropy over `batches` ((x, y) pairs) with respect to `model`'s
    architecture logits; see :class:`HessianProbe` for the loss (batch norm in training
    mode, softmax mixture) and :meth:`HessianProbe.dominant_eigenvalue` for the iteration.
    Pass a `probe` to reuse its traced functions."""
    probe = probe if probe is not None else HessianProbe(model)
    return probe.dominant_eigenvalue(batches, iterations, seed)


# -- parameter-free edges -----------------------------------------------------------------
def _parameter_free(layer: MixedOp, op: str) -> bool:
    """Whether candidate `op` of `layer` has no trainable parameters (its cost table's
    params column; a stride-2 ``skip_connect`` is a FactorizedReduce: it has some)."""
    index = layer.candidate_names.index(op)
    if layer.cost_table is not None:
        return bool(layer.cost_table[index, 0] == 0)
    return not layer.candidates[index].trainable_weights


def parameter_free_share(space: Any, supernet: keras.Model, rule: str = "argmax") -> dict:
    """The share of the derived child's decisions that carry no parameters, per cell kind
    (``param_free_share/normal``, ``/reduce``) and over both (``param_free_share``).

    The decisions are those `rule` makes (:meth:`CellSpace.derive`): ``argmax`` decides
    every edge of a cell, and an edge whose argmax is ``none`` (deleted from the child)
    counts as parameter-free, so a cell emptied into ``none`` counts as collapsed;
    ``top2`` keeps two edges per node, never ``none``. An op is parameter-free when its
    cost table (:class:`MixedOp` ``cost_table``) gives it 0 trainable parameters: pools
    (their search-time batch norm is not affine), ``skip_connect`` at stride 1 and
    ``none``; ``skip_connect`` at stride 2 is a FactorizedReduce with 1x1 convolutions
    and counts as parametrised."""
    genotype = space.derive(supernet, rule)
    out, free_all, total_all = {}, 0, 0
    for kind in KINDS:
        free = total = 0
        for dst, pairs in enumerate(genotype.cell(kind), start=2):
            for op, src in pairs:
                free += _parameter_free(space.mixed_op(supernet, kind, src, dst), op)
                total += 1
            if rule == "argmax":  # the edges into dst that argmax deleted ('none')
                deleted = dst - len(pairs)
                free += deleted
                total += deleted
        out[f"{SHARE}/{kind}"] = free / total if total else 0.0
        free_all += free
        total_all += total
    out[SHARE] = free_all / total_all if total_all else 0.0
    return out


# -- the stop rule ------------------------------------------------------------------------
@dataclasses.dataclass
class CollapseGuard:
    """DARTS-ES (Zela et al.) plus a parameter-free-share threshold, decided per epoch.

    Eigenvalue rule: at epoch i (1-based), the mean magnitude of the eigenvalues measured
    in the last `window` epochs (i-window, i] is compared with the mean over the `window`
    epochs before ((i-2 window, i-window]); when it is more than `ratio` times that, the
    guard fires and keeps the architecture of epoch i-window, the one DARTS-ES returns
    (its rule: stop when lambda(i-k) / lambda(i) < 0.75, k = 5, averaged over a local
    window; ``ratio`` 1.3 is about 1/0.75). The growth is measured over a sliding window
    rather than against the first epochs' value because the early eigenvalue is that of
    untrained weights: it grows severalfold while the weights learn, so a ratio of the
    early value fires in every search (see the README's measurements).

    Share rule: when the normal cell's parameter-free share (:func:`parameter_free_share`)
    passes `share` (>), the guard fires and keeps the last earlier epoch whose share was
    at most `share`. Reduction cells are not judged: pools are their usual choice (the
    published DARTS reduction cell is all pools and skips).

    `ratio` 0 turns the eigenvalue rule off. Neither rule fires at epochs <= `warmup`.
    Magnitudes are compared: the dominant eigenvalue may be negative.

    The guard keeps, per epoch, the figures and the architecture logits (``logits``: one
    list of floats per logits variable) it was given; :meth:`state` / :meth:`set_state`
    are JSON-able for checkpoints.
    """

    ratio: float = 1.3
    window: int = 5
    share: float = 0.6
    warmup: int = 5
    epochs: list = dataclasses.field(default_factory=list)  # one dict per epoch
    fired: dict | None = None  # {"epoch", "reason", "kept_epoch"} once it fired

    def update(
        self, epoch: int, eigenvalue: float | None, share: float | None, logits
    ) -> str | None:
        """Records `epoch` (1-based) and decides; returns the reason to stop or None."""
        self.epochs = [e for e in self.epochs if e["epoch"] < epoch]  # a redone epoch
        self.epochs.append(
            {
                "epoch": epoch,
                "eigenvalue": eigenvalue,
                "share": share,
                "logits": [np.asarray(a, float).ravel().tolist() for a in logits],
            }
        )
        if self.fired is not None or epoch <= self.warmup:
            return None
        reason = self._eigenvalue_rule(epoch) or self._share_rule(epoch)
        return None if reason is None else reason[0]

    def _mean(self, lo: int, hi: int) -> float | None:
        values = [
            abs(e["eigenvalue"])
            for e in self.epochs
            if lo < e["epoch"] <= hi and e["eigenvalue"] is not None
        ]
        return float(np.mean(values)) if values else None

    def _fire(self, epoch: int, reason: str, kept: int) -> tuple[str, int]:
        self.fired = {"epoch": epoch, "reason": reason, "kept_epoch": kept}
        return reason, kept

    def _eigenvalue_rule(self, epoch: int) -> tuple[str, int] | None:
        if not self.ratio:
            return None  # the rule is off
        k = self.window
        recent, before = self._mean(epoch - k, epoch), self._mean(epoch - 2 * k, epoch - k)
        if recent is None or before is None or epoch - k < 1:
            return None
        if recent > self.ratio * before:
            reason = (
                f"collapse guard: the Hessian eigenvalue grew {recent / max(before, 1e-12):.2f}x "
                f"over {k} epochs (mean |lambda| {before:.4g} -> {recent:.4g}; "
                f"ratio {self.ratio:g}); keeping epoch {epoch - k}'s architecture"
            )
            return self._fire(epoch, reason, epoch - k)
        return None

    def _share_rule(self, epoch: int) -> tuple[str, int] | None:
        now = self.epochs[-1]["share"]
        if now is None or not now > self.share:
            return None
        ok = [
            e["epoch"]
            for e in self.epochs[:-1]
            if e["share"] is not None and e["share"] <= self.share
        ]
        kept = ok[-1] if ok else 1
        reason = (
            f"collapse guard: the normal cell's parameter-free share is {now:.2f} "
            f"(> {self.share:g}); keeping epoch {kept}'s architecture"
        )
        return self._fire(epoch, reason, kept)

    def kept_logits(self) -> list[list[float]] | None:
        """The logits recorded at the kept epoch, once the guard fired."""
        if self.fired is None:
            return None
        for e in self.epochs:
            if e["epoch"] == self.fired["kept_epoch"]:
                return e["logits"]
        return None

    def state(self) -> dict:
        return {"epochs": self.epochs, "fired": self.fired}

    def set_state(self, state: dict) -> None:
        self.epochs = list(state.get("epochs", []))
        self.fired = state.get("fired")


# -- the trainer's side ---------------------------------------------------------------------
class CollapseWatch:
    """Measures the collapse figures of a one-shot trainer and holds its guard.

    Args:
      trainer: a :class:`~kerasnas.trainers.base.OneShotTrainer` whose config is a
        :class:`~kerasnas.trainers.config.TrainerConfig` (``hessian_every``,
        ``hessian_batches``, ``hessian_iterations``, ``collapse_*``).
      space, rule: the cell space and derivation rule of the parameter-free share (None:
        no share is measured; the search job passes its own).
    """

    def __init__(self, trainer: Any, space: Any = None, rule: str = "argmax"):
        c = trainer.config
        self.trainer = trainer
        self.space = space
        self.rule = rule
        self.every = c.hessian_every
        self.batches = c.hessian_batches
        self.iterations = c.hessian_iterations
        self.seed = c.seed
        self.guard = (
            CollapseGuard(c.collapse_ratio, c.collapse_window, c.collapse_share, c.collapse_warmup)
            if c.collapse_guard
            else None
        )
        self._probe: HessianProbe | None = None

    def measures_eigenvalue(self, epoch: int, last: bool) -> bool:
        """Whether `epoch` (0-based) gets an eigenvalue: every ``hessian_every`` epochs
        (every epoch with the guard on), and the last one."""
        if self.trainer.strategy is not None:
            return False  # the probe runs outside a distribution strategy's replicas
        rule = self.guard is not None and self.guard.ratio > 0  # the guard's eigenvalue rule
        every = self.every or (1 if rule else 0)
        return bool(every) and ((epoch + 1) % every == 0 or last)

    def figures(self, data: Any, epoch: int, last: bool) -> dict[str, float]:
        """The epoch's figures: the share (when a space is known) and, when due, the
        eigenvalue and its convergence on the first ``hessian_batches`` validation
        batches."""
        out: dict[str, float] = {}
        if self.space is not None:
            out.update(parameter_free_share(self.space, self.trainer.model, self.rule))
        if self.measures_eigenvalue(epoch, last):
            batches = list(data.valid(self.trainer.config.batch_size).take(self.batches))
            if self._probe is None:
                self._probe = HessianProbe(self.trainer.model, self.trainer.arch_vars)
            t = time.perf_counter()
            value, change = self._probe.dominant_eigenvalue(batches, self.iterations, self.seed)
            out[EIGENVALUE] = value
            out[CONVERGENCE] = change
            out["hessian_seconds"] = time.perf_counter() - t  # the first call traces
        return out

    def should_stop(self, record: dict[str, Any]) -> str | None:
        """The guard's decision on an epoch's record; when it fires, the logits of the
        kept epoch are assigned back to the model. None without a guard."""
        if self.guard is None:
            return None
        logits = [v.numpy() for v in self.trainer.arch_vars]
        reason = self.guard.update(
            record["epoch"], record.get(EIGENVALUE), record.get(f"{SHARE}/normal"), logits
        )
        if reason is not None:
            for v, values in zip(self.trainer.arch_vars, self.guard.kept_logits(), strict=True):
                v.assign(np.asarray(values, np.float32).reshape(tuple(v.shape)))
        return reason

    def summary(self) -> dict[str, Any]:
        """What metrics.json says of the guard: ``collapse_guard`` (on/off), ``fired``,
        ``fired_epoch``, ``reason``, ``kept_epoch``."""
        fired = self.guard.fired if self.guard is not None else None
        return {
            "collapse_guard": self.guard is not None,
            "fired": fired is not None,
            "fired_epoch": fired["epoch"] if fired else None,
            "reason": fired["reason"] if fired else None,
            "kept_epoch": fired["kept_epoch"] if fired else None,
        }
