"""ENAS (Pham et al., ICML 2018) and random search with weight sharing (Li & Talwalkar,
2019) on the cell supernet of :class:`~kerasnas.search_spaces.cell.CellSpace`.

Both sample *children* of one supernet whose weights every child shares. A child is an
architecture of the discrete cell space (:class:`~kerasnas.search_spaces.cell_discrete.
DiscreteCellSpace`: every node takes two different inputs, each through one op; cells of a
kind share one architecture), laid onto the supernet's edges by :class:`ChildEncoder`: edge
(src, dst) runs the chosen op when src is one of node dst's inputs, else ``none``. The
supernet's MixedOps use relaxation ``controlled``: only the op written into the owner's
``choice`` weight runs.

An epoch: (1) every minibatch of the training split trains the shared weights of one child
drawn from the policy (SGD with momentum on that child's weights only: ops off the child
keep their weights and momentum); (2) ENAS only: ``controller_steps`` REINFORCE updates of
ENAS' micro controller (:class:`~kerasnas.multitrial.micro_controller.MicroController`: one
LSTM sequence samples the normal, then the reduction cell, each node's inputs by attention
over the earlier nodes' anchors), each on ``controller_batch`` children whose reward is
their accuracy on one validation minibatch (batch norm with that minibatch's statistics,
or in inference mode with ``child_bn='moving'``; validation batches taken in turn,
cycling). Random search draws children uniformly and has no phase (2). At the end,
:meth:`best_genotype` samples ``final_samples`` children and keeps the most accurate on the
validation split with inherited weights. The MixedOps' architecture logits are not used.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from kerasnas.batchnorm import Recalibrator, saved_statistics, statistics_mode
from kerasnas.genotype import Genotype
from kerasnas.graph_options import lean_function
from kerasnas.layers import MixedOp, mixed_ops, set_inference
from kerasnas.multitrial.micro_controller import MicroController, MicroControllerConfig
from kerasnas.search_spaces.base import Arch
from kerasnas.search_spaces.cell import CELL_KINDS, CellSpace
from kerasnas.search_spaces.cell_discrete import DiscreteCellSpace
from kerasnas.trainers.base import OneShotTrainer
from kerasnas.trainers.config import ENASConfig, WeightSharingConfig

__all__ = [
    "ChildEncoder",
    "ENASConfig",
    "ENASTrainer",
    "RandomWSTrainer",
    "WeightSharingConfig",
    "WeightSharingTrainer",
]


# purposes of the per-epoch random streams (a Generator per (seed, epoch, purpose))
_WEIGHT_CHILDREN, _CONTROLLER, _EVALUATE, _ENTROPY, _FINAL = range(5)


class ChildEncoder:
    """Lays architectures of the discrete cell space onto a CellSpace supernet.

    Args:
      space: the :class:`CellSpace` the supernet was built from.
      supernet: ``space.build_supernet(...)`` (any relaxation; trainers need ``controlled``).
      discrete: the space of children; default: ``space``'s sizes and its ops other than
        ``none``, in the ``search`` form (what :meth:`CellSpace.build_child` builds).

    The supernet's ops must include ``none`` (the edges off the child) and every op of
    `discrete`; ValueError otherwise. :attr:`owners` lists the MixedOps that hold a
    ``choice`` (one per edge and cell kind), in the supernet's creation order; a choice
    vector has one entry per owner.
    """

    def __init__(
        self, space: CellSpace, supernet: keras.Model, discrete: DiscreteCellSpace | None = None
    ):
        if "none" not in space.ops:
            raise ValueError(
                f"the supernet's ops must include 'none' (the op of every edge a child does "
                f"not use); got {space.ops}"
            )
        if discrete is None:
            discrete = DiscreteCellSpace(
                init_channels=space.init_channels,
                layers=space.layers,
                nodes=space.nodes,
                ops=tuple(op for op in space.ops if op != "none"),
                form="search",
                stem_multiplier=space.stem_multiplier,
            )
        missing = [op for op in discrete.ops if op not in space.ops]
        if missing:
            raise ValueError(
                f"the supernet's ops {space.ops} lack the child ops {missing} of the discrete space"
            )
        if discrete.nodes != space.nodes:
            raise ValueError(
                f"the discrete space has {discrete.nodes} nodes per cell, "
                f"the supernet {space.nodes}"
            )
        self.space = space
        self.discrete = discrete
        self.owners: list[MixedOp] = [m for m in mixed_ops(supernet) if m.share_with is None]
        index = {id(m): i for i, m in enumerate(self.owners)}
        self._edge_owner: dict[tuple[str, int, int], int] = {}
        for kind in CELL_KINDS:
            for src, dst in space.edges():
                try:
                    layer = space.mixed_op(supernet, kind, src, dst)
                except ValueError:
                    layer = None
                if not isinstance(layer, MixedOp) or id(layer.owner()) not in index:
                    raise ValueError(
                        f"the model is not a supernet of this CellSpace: no MixedOp for "
                        f"{kind} edge ({src}, {dst})"
                    )
                self._edge_owner[(kind, src, dst)] = index[id(layer.owner())]
        if len(set(self._edge_owner.values())) != len(self.owners):
            raise ValueError(
                f"the model is not a supernet of this CellSpace: it has {len(self.owners)} "
                f"MixedOp owners, the space {len(self._edge_owner)} edges"
            )
        for owner in self.owners:
            if tuple(owner.candidate_names) != space.ops:
                raise ValueError(
                    f"MixedOp {owner.name} has candidates {owner.candidate_names}, "
                    f"the CellSpace ops {list(space.ops)}"
                )
        self._none = space.ops.index("none")

    @property
    def num_owners(self) -> int:
        return len(self.owners)

    def choices(self, arch: Mapping[str, Any]) -> np.ndarray:
        """The owners' ``choice`` values of `arch` (validated and repaired): int32
        [num_owners], the op index on the child's edges, the index of ``none`` elsewhere."""
        arch = self.discrete.validate(arch)
        out = np.full(len(self.owners), self._none, np.int32)
        for kind in CELL_KINDS:
            for i in range(self.space.nodes):
                for k in (0, 1):
                    src = arch[f"{kind}/node{i}/input{k}"]
                    op = arch[f"{kind}/node{i}/op{k}"]
                    out[self._edge_owner[(kind, src, i + 2)]] = self.space.ops.index(op)
        return out

    def genotype(self, arch: Mapping[str, Any]) -> Genotype:
        """The child's :class:`~kerasnas.Genotype` (``DiscreteCellSpace.genotype``)."""
        return self.discrete.genotype(arch)

    def encode(self, arch: Mapping[str, Any]) -> tuple[np.ndarray, Genotype]:
        """(:meth:`choices`, :meth:`genotype`) of `arch`."""
        return self.choices(arch), self.genotype(arch)

    def assign(self, choices) -> None:
        """Writes a choice vector into the owners' ``choice`` weights (eagerly or traced)."""
        for i, owner in enumerate(self.owners):
            owner.choice.assign(choices[i])


class WeightSharingTrainer(OneShotTrainer):
    """The weight phase, evaluation and final selection shared by ENAS and random search
    with weight sharing; subclasses give the policy (:meth:`sample_archs`,
    :meth:`policy_entropy`).

    Args:
      model: ``space.build_supernet("controlled", ...)``.
      space: its :class:`CellSpace` (ops must include ``none``).
      config: a :class:`WeightSharingConfig` (or subclass).
      output_dir, verbose: as :class:`~kerasnas.trainers.base.Trainer`.
    """

    name = "weight_sharing"
    relaxations = ("controlled",)
    entropy_samples = 100  # children the controller's entropy is estimated from

    def __init__(
        self,
        model: keras.Model,
        space: CellSpace,
        config: WeightSharingConfig,
        output_dir: str | None = None,
        verbose: int = 1,
    ):
        super().__init__(model, config, output_dir, verbose)
        self.space = space
        self.encoder = ChildEncoder(space, model)
        self.discrete = self.encoder.discrete
        self._owner_index = {id(m): i for i, m in enumerate(self.encoder.owners)}
        self._child_fns: dict[str, Any] = {}
        self._recalibrator: Recalibrator | None = None

    @classmethod
    def create(cls, supernet, space, config, output_dir=None, verbose=1, strategy=None):
        if strategy is not None:
            raise ValueError(f"{cls.__name__} does not train under a tf.distribute strategy")
        return cls(supernet, space, config, output_dir, verbose)

    # -- the policy (subclasses) ------------------------------------------------------------
    def sample_archs(self, n: int, rng: np.random.Generator) -> list[Arch]:
        """`n` children of the current policy (architectures of :attr:`discrete`)."""
        raise NotImplementedError

    def policy_entropy(self, rng: np.random.Generator) -> float:
        """Mean entropy per decision of the policy, in nats."""
        raise NotImplementedError

    # -- helpers ------------------------------------------------------------------------------
    def rng(self, purpose: int, epoch: int | None = None) -> np.random.Generator:
        """The Generator of (seed, epoch, purpose); `epoch` defaults to the epochs done
        (during :meth:`fit`, the epoch being run)."""
        epoch = len(self.history) if epoch is None else epoch
        return np.random.default_rng([self.config.seed, epoch, purpose])

    def choice_vectors(self, archs: list[Arch]) -> np.ndarray:
        """int32 [len(archs), num_owners]."""
        out = np.zeros((len(archs), self.encoder.num_owners), np.int32)
        for i, arch in enumerate(archs):
            out[i] = self.encoder.choices(arch)
        return out

    # -- the weight phase ---------------------------------------------------------------------
    def step_signature(self):
        return (*super().step_signature(), tf.TensorSpec((self.encoder.num_owners,), tf.int32))

    def train_batches(self, data, epoch: int) -> tf.data.Dataset:
        """Training batches ``(x, y, choices)``: one child of the policy per batch, all
        sampled up front from the Generator of (seed, epoch)."""
        archs = self.sample_archs(self.steps_per_epoch(data), self.rng(_WEIGHT_CHILDREN, epoch))
        children = tf.data.Dataset.from_tensor_slices(self.choice_vectors(archs))
        batches = data.train(epoch, self.config.batch_size)
        return tf.data.Dataset.zip((batches, children)).map(lambda b, c: (b[0], b[1], c))

    def train_step(self, x, y, choices):
        """Sets the child, then one SGD step on its weights (the others keep theirs)."""
        c = self.config
        self.encoder.assign(choices)
        with tf.GradientTape() as tape:
            logits = self.logits_of(self.model(x, training=True))
            loss, acc = self.loss_and_accuracy(y, logits)
        grads = tape.gradient(loss, self.weight_vars)
        self.apply_update(
            self.w_opt,
            grads,
            self.weight_vars,
            c.w_grad_clip,
            c.w_weight_decay,
            # candidate k of a MixedOp trains only when its owner's choice is k
            active=self.candidate_masks(lambda m: choices[self._owner_index[id(m.owner())]]),
        )
        return {"loss": loss, "accuracy": acc}

    # -- evaluation of children ---------------------------------------------------------------
    def _child_fn(self, bn: str):
        """tf.function (x, y, choices) -> correct predictions of child `choices` on one
        batch; `bn` ``moving``: batch norm in inference mode; ``batch``: each batch's own
        statistics, the moving averages untouched."""
        if bn not in self._child_fns:

            def correct(x, y, choices):
                self.encoder.assign(choices)
                logits = self.logits_of(self.model(x, training=bn == "batch"))
                hit = tf.equal(tf.argmax(logits, -1, output_type=tf.int32), y)
                return tf.reduce_sum(tf.cast(hit, tf.int32))

            fn = lean_function(tf.function(correct, input_signature=self.step_signature()))
            # read once, when traced: the chosen op; batch statistics left alone
            set_inference(self.model, "sample")
            try:
                with statistics_mode(self.model, "frozen"):
                    fn.get_concrete_function()
            finally:
                set_inference(self.model, "argmax")
            self._child_fns[bn] = fn
        return self._child_fns[bn]

    def _child_correct(self, x, y, choices, bn: str = "moving") -> int:
        return int(self._child_fn(bn)(x, y, tf.constant(choices, tf.int32)))

    def recalibrate(self, choices, data, epoch: int | None = None) -> None:
        """Recomputes the batch-norm statistics of child `choices` on the first
        ``recalibration_batches`` training batches of `epoch` (default: the epochs done)."""
        if self._recalibrator is None:
            x_spec, _, c_spec = self.step_signature()

            def forward(x, choices):
                self.encoder.assign(choices)
                self.model(x, training=True)

            self._recalibrator = Recalibrator(self.model, (x_spec, c_spec), forward)
        epoch = len(self.history) if epoch is None else epoch
        batches = data.train(epoch, self.config.batch_size).take(self.config.recalibration_batches)
        self._recalibrator(batches, tf.constant(choices, tf.int32))

    def _scored(self, choices, batches, data, bn: str) -> tuple[int, int]:
        """(correct, total) of child `choices` on `batches` with batch norm as `bn` says
        (``recalibrate`` needs `data`; the supernet's statistics are restored after)."""
        if bn == "recalibrate":
            with saved_statistics(self.model):
                self.recalibrate(choices, data)
                return self._scored(choices, batches, data, "moving")
        correct = total = 0
        for x, y in batches:
            correct += self._child_correct(x, y, choices, bn)
            total += int(y.shape[0])
        return correct, total

    def child_accuracy(
        self, arch: Arch, dataset: tf.data.Dataset, data=None, bn: str | None = None
    ) -> float:
        """Accuracy of child `arch` with the supernet's weights on batches ``(x, y)``;
        batch norm as `bn` (default ``config.child_bn``; ``recalibrate`` needs the
        :class:`~kerasnas.data.DataBundle` `data` for its training batches)."""
        bn = bn or self.config.child_bn
        if bn == "recalibrate" and data is None:
            raise ValueError("child_accuracy: bn='recalibrate' needs data (training batches)")
        correct, total = self._scored(self.encoder.choices(arch), dataset, data, bn)
        return correct / max(total, 1)

    def evaluate(
        self,
        dataset: tf.data.Dataset,
        mode: str = "sample",
        repeats: int = 1,
        bn: str | None = None,
    ) -> float:
        """Accuracy on batches ``(x, y)`` with one child of the current policy per batch
        (the stochastic supernet); with `repeats` > 1 the mean over that many passes (new
        children). Batch norm: `bn` ``batch`` (each batch's statistics) or ``moving``;
        default ``config.child_bn``, with ``recalibrate`` read as ``batch`` (recalibrating a
        new child per batch would cost recalibration_batches forward passes each). `mode`
        must be ``sample``: the supernet's logits mean nothing here."""
        if mode != "sample":
            raise ValueError(f"{type(self).__name__}.evaluate: mode must be 'sample', got {mode!r}")
        bn = bn or ("batch" if self.config.child_bn == "recalibrate" else self.config.child_bn)
        if bn not in ("batch", "moving"):
            raise ValueError(f"evaluate: bn must be 'batch' or 'moving', got {bn!r}")
        rng = self.rng(_EVALUATE)
        correct = total = 0
        for _ in range(repeats):
            for x, y in dataset:
                choices = self.encoder.choices(self.sample_archs(1, rng)[0])
                correct += self._child_correct(x, y, choices, bn)
                total += int(y.shape[0])
        return correct / max(total, 1)

    def epoch_extras(self) -> dict[str, float]:
        return {"entropy": self.policy_entropy(self.rng(_ENTROPY))}

    def best_genotype(self, data) -> tuple[Genotype, float]:
        """ENAS' final selection: ``final_samples`` children of the policy, each scored on
        the whole validation split with the supernet's weights; the best genotype (the
        first on ties) and its accuracy."""
        archs = self.sample_archs(self.config.final_samples, self.rng(_FINAL))
        scores = [self.child_accuracy(a, data.valid(self.config.batch_size), data) for a in archs]
        best = int(np.argmax(scores))
        return self.encoder.genotype(archs[best]), float(scores[best])


class ENASTrainer(WeightSharingTrainer):
    """ENAS: children from ENAS' micro controller, trained by REINFORCE on their
    validation accuracy after every epoch of shared-weight training (see the module doc).

    The controller is :attr:`controller`, a :class:`~kerasnas.multitrial.micro_controller.
    MicroController` over :attr:`discrete`; checkpoints keep its weights, Adam state and
    reward baseline."""

    name = "enas"

    def __init__(
        self,
        model: keras.Model,
        space: CellSpace,
        config: ENASConfig | None = None,
        output_dir: str | None = None,
        verbose: int = 1,
    ):
        config = config or ENASConfig()
        super().__init__(model, space, config, output_dir, verbose)
        controller = MicroControllerConfig(
            units=config.controller_units,
            num_lstm_layers=config.controller_layers,
            learning_rate=config.controller_lr,
            baseline_decay=config.controller_baseline_decay,
            entropy_weight=config.controller_entropy_weight,
            temperature=config.controller_temperature,
            tanh_constant=config.controller_tanh_constant,
            op_tanh_reduce=config.controller_op_tanh_reduce,
            op_bias=config.controller_op_bias,
        )
        self.controller = MicroController(self.discrete, controller, seed=config.seed)

    def _archs(self, tokens: np.ndarray) -> list[Arch]:
        return [self.discrete.from_indices(row) for row in tokens]

    def sample_archs(self, n, rng):
        tokens, _ = self.controller.sample(n, rng)
        return self._archs(tokens)

    def policy_entropy(self, rng):
        """Estimated from :attr:`entropy_samples` children: the mean over children of the
        summed entropies of the controller's per-decision softmaxes, per decision."""
        tokens, counted = self.controller.sample(self.entropy_samples, rng)
        _, ent = self.controller.log_prob(tokens, counted)
        return float(np.mean(ent)) / len(self.discrete)

    def reward(self, arch: Arch, batch) -> float:
        """ENAS' reward of a child: its accuracy on one validation minibatch ``(x, y)``."""
        x, y = batch
        bn = "moving" if self.config.child_bn == "moving" else "batch"
        return self._child_correct(x, y, self.encoder.choices(arch), bn) / max(int(y.shape[0]), 1)

    def on_epoch_end(self, data, epoch):
        """The controller phase: ``controller_steps`` REINFORCE updates (see the module doc);
        validation minibatches are used in turn from where the previous epoch stopped."""
        c = self.config
        if c.controller_steps == 0:
            return {}
        if data.num_valid == 0:
            raise ValueError("ENASTrainer: the controller's rewards need a validation split")
        count = c.controller_steps * c.controller_batch
        num_batches = math.ceil(data.num_valid / c.batch_size)
        start = (epoch * count) % num_batches
        batches = iter(data.valid(c.batch_size).repeat().skip(start).take(count))
        rng = self.rng(_CONTROLLER, epoch)
        rewards, losses = [], []
        for _ in range(c.controller_steps):
            # the first update traces the child scorer and the controller's update
            with self.startup("controller_update", "the controller's update", "tracing, once"):
                tokens, counted = self.controller.sample(c.controller_batch, rng)
                batch_rewards = [self.reward(a, next(batches)) for a in self._archs(tokens)]
                losses.append(self.controller.train(tokens, counted, batch_rewards))
            rewards.extend(batch_rewards)
        # the controller's entropy after the phase is the record's "entropy" (epoch_extras)
        return {
            "reward": float(np.mean(rewards)),
            "controller_loss": float(np.mean(losses)),
            "baseline": float(self.controller.baseline),
        }

    def extra_variables(self) -> list:
        return [*self.controller.weights, *self.controller.reinforce_optimizer.variables]

    def extra_state(self) -> dict[str, Any]:
        return {"controller_baseline": self.controller.baseline}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.controller.baseline = state.get("controller_baseline")


class RandomWSTrainer(WeightSharingTrainer):
    """Random search with weight sharing (Li & Talwalkar, 2019): children drawn uniformly
    (``DiscreteCellSpace.sample``), the ENAS weight phase, no controller; the final child is
    the best of ``final_samples`` uniform samples (:meth:`best_genotype`)."""

    name = "random_ws"

    def __init__(
        self,
        model: keras.Model,
        space: CellSpace,
        config: WeightSharingConfig | None = None,
        output_dir: str | None = None,
        verbose: int = 1,
    ):
        super().__init__(model, space, config or WeightSharingConfig(), output_dir, verbose)

    def sample_archs(self, n, rng):
        return [self.discrete.sample(rng) for _ in range(n)]

    def policy_entropy(self, rng=None):
        """Exact, per decision: the entropy of the uniform distribution over children (per
        node an ordered pair of different inputs among i + 2, an op for each) over the
        number of decisions, as ENAS' controller reports it."""
        d = self.discrete
        per_kind = sum(math.log((i + 2) * (i + 1)) for i in range(d.nodes))
        per_kind += 2 * d.nodes * math.log(len(d.ops))
        return len(CELL_KINDS) * per_kind / len(d)
