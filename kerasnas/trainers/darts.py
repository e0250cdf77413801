"""DARTS (Liu et al., ICLR 2019): the bilevel search on the softmax-relaxed supernet.

The training split is cut in two halves (example i goes to half ``i % 2``): the weights
minimise the loss on half 0, the architecture logits the loss on half 1. Every step reads a
batch of each half and makes, in the authors' order, first an architecture step, then a
weight step with the updated logits.

The architecture gradient is first order (the gradient of the half-1 loss at the current
weights) or second order ("unrolled"): the gradient through one virtual weight step

    w' = w - xi * (momentum * buf + dL_train(w, alpha)/dw + wd * w)
    grad = dL_val(w', alpha)/dalpha - xi * d2L_train(w, alpha)/(dalpha dw) . v,
    v = dL_val(w', alpha)/dw'

with xi the current weight learning rate, buf the momentum buffer and the Hessian-vector
product by central finite differences at w +- eps v, eps = unrolled_eps / ||v||. The virtual
weights are assigned to the model's variables and restored afterwards, and so are the
non-trainable variables (batch-norm moving statistics): only the weight step's forward pass
updates them. Derive the child with ``CellSpace.derive(model, rule="top2")``.

A resource penalty (``resource_lambda`` or a ``target``, see
:mod:`kerasnas.trainers.penalty`) adds ``lambda * penalty(expected cost under
softmax(alpha))`` to the architecture step's loss; its gradient is exact (no sample).
"""

from __future__ import annotations

import math

import tensorflow as tf

from kerasnas import distribute
from kerasnas.trainers.config import DARTSConfig
from kerasnas.trainers.penalty import PENALTY_FIELDS, PenalizedTrainer


class DARTSTrainer(PenalizedTrainer):
    """Differentiable architecture search on any Keras model whose MixedOps use relaxation
    ``softmax``. Call :meth:`fit`; derive the child with the search space's
    ``derive(model, rule="top2")``."""

    name = "darts"
    relaxations = ("softmax",)

    def __init__(
        self, model, config: DARTSConfig | None = None, output_dir=None, verbose=1, strategy=None
    ):
        super().__init__(model, config or DARTSConfig(), output_dir, verbose, strategy)
        self._grad_fn = None

    def config_dict(self) -> dict:
        config = super().config_dict()
        if not self.penalty.active:  # checkpoints from before DARTS had a penalty resume
            for name in PENALTY_FIELDS:
                config.pop(name, None)
        return config

    # -- data: a batch of each half of the training split per step ------------------------
    def step_signature(self) -> tuple[tf.TensorSpec, ...]:
        """(x_train, y_train, x_valid, y_valid): two batches of images and labels."""
        images, labels = super().step_signature()
        return (images, labels, images, labels)

    def train_batches(self, data, epoch: int) -> tf.data.Dataset:
        """Batches of half 0 (weights) zipped with batches of half 1 (logits), as many steps
        as half 0 has batches (half 1 is repeated when shorter). Each half is shuffled with
        its own epoch seed (2 * epoch and 2 * epoch + 1), so the order is a pure function of
        (seed, epoch) and the pairs of examples differ between epochs."""
        if data.num_train < 2:
            raise ValueError(
                f"DARTSTrainer needs at least 2 training examples (one per half), "
                f"got {data.num_train}"
            )
        bs = self.config.batch_size
        train = data.train(2 * epoch, bs, part=(0, 2))
        valid = data.train(2 * epoch + 1, bs, part=(1, 2)).repeat()
        return tf.data.Dataset.zip(train, valid).map(lambda t, v: (*t, *v))

    def steps_per_epoch(self, data) -> int:
        return math.ceil(data.part_size((0, 2)) / self.config.batch_size)

    # -- the step ---------------------------------------------------------------------------
    def _gradients(self, x, y):
        """(loss, accuracy, gradients with respect to ``arch_vars + weight_vars``) on (x, y),
        batch norm in training mode; None for variables the loss does not reach.

        One ``tf.function``, traced once and called by every pass of a step (a second-order
        step makes five): tracing the model inline five times took five times longer. Unused
        outputs (e.g. weight gradients of the validation pass) are pruned from the compiled
        step."""
        if self._grad_fn is None:

            def gradients(x, y):
                with tf.GradientTape() as tape:
                    logits = self.logits_of(self.model(x, training=True))
                    loss, acc = self.loss_and_accuracy(y, logits)
                return loss, acc, tape.gradient(loss, self.arch_vars + self.weight_vars)

            # under a strategy, inline: each replica's trace must capture its own variables
            self._grad_fn = (
                gradients
                if self.strategy is not None
                else tf.function(gradients, reduce_retracing=True)
            )
        return self._grad_fn(x, y)

    def _split(self, grads):
        """(architecture gradients, weight gradients), zeros where a gradient is None."""
        grads = [
            tf.zeros_like(v.value) if g is None else g
            for g, v in zip(grads, self.arch_vars + self.weight_vars, strict=True)
        ]
        n = len(self.arch_vars)
        return grads[:n], grads[n:]

    def arch_gradients(self, x_train, y_train, x_valid, y_valid) -> list:
        """The architecture gradient of the configured order (one tensor per logits
        variable, in the order of ``arch_vars``), before clipping and weight decay. Leaves
        every variable as it was; works eagerly and inside ``tf.function``."""
        return self._arch_gradients(x_train, y_train, x_valid, y_valid)[0]

    def _arch_gradients(self, xt, yt, xv, yv):
        """(architecture gradients, validation-batch loss); see :meth:`arch_gradients`."""
        frozen = self.model.non_trainable_variables
        saved_frozen = [tf.identity(v.value) for v in frozen]
        if self.config.order == 1:
            valid_loss, _, grads = self._gradients(xv, yv)
            grads = self._split(grads)[0]
        else:
            grads, valid_loss = self._unrolled(xt, yt, xv, yv)
        for v, value in zip(frozen, saved_frozen, strict=True):
            v.assign(value)
        return grads, valid_loss

    def _unrolled(self, xt, yt, xv, yv):
        c, weights = self.config, self.weight_vars
        w = [tf.identity(v.value) for v in weights]
        # the virtual step: MomentumSGD's rule without clipping (as the authors' code)
        g = distribute.sum_over_replicas(self._split(self._gradients(xt, yt)[2])[1])
        lr, momentum = self.w_opt.learning_rate_variable.value, self.w_opt.momentum
        for v, w0, gi in zip(weights, w, g, strict=True):
            xi = tf.cast(lr, v.dtype)
            buf = self.w_opt.momentum_buffer(v).value
            v.assign(w0 - xi * (momentum * buf + gi + c.w_weight_decay * w0))
        valid_loss, _, grads = self._gradients(xv, yv)
        d_arch, vec = self._split(grads)
        vec = distribute.sum_over_replicas(vec)  # d_arch stays a share: summed by the update
        # Hessian-vector product d2L_train/(dalpha dw) . vec by central differences at w
        norm = tf.linalg.global_norm(vec)
        eps = c.unrolled_eps / tf.maximum(norm, tf.constant(1e-12, norm.dtype))
        arch_grads = {}
        for sign in (1.0, -1.0):
            for v, w0, d in zip(weights, w, vec, strict=True):
                v.assign(w0 + sign * tf.cast(eps, v.dtype) * d)
            arch_grads[sign] = self._split(self._gradients(xt, yt)[2])[0]
        for v, w0 in zip(weights, w, strict=True):
            v.assign(w0)
        out = []
        for v, da, gp, gm in zip(
            self.arch_vars, d_arch, arch_grads[1.0], arch_grads[-1.0], strict=True
        ):
            xi, e = tf.cast(lr, v.dtype), tf.cast(eps, v.dtype)
            out.append(da - xi * (gp - gm) / (2.0 * e))
        return out, valid_loss

    def train_step(self, x_train, y_train, x_valid, y_valid):
        """Architecture step on the logits' batch, then weight step on the weights' batch
        with the updated logits. Logs the weights' batch loss/accuracy and ``valid_loss``,
        the logits' batch loss (at the virtual weights for order 2)."""
        c = self.config
        arch_grads, valid_loss = self._arch_gradients(x_train, y_train, x_valid, y_valid)
        logs = {}
        if self.penalty.active:
            with tf.GradientTape() as tape:
                term, logs["penalty"] = self.penalty.term()
            extra = tape.gradient(term, self.arch_vars)
            arch_grads = [g if e is None else g + e for g, e in zip(arch_grads, extra, strict=True)]
        self.apply_update(self.a_opt, arch_grads, self.arch_vars, c.a_grad_clip, c.a_weight_decay)
        loss, acc, grads = self._gradients(x_train, y_train)
        grads = grads[len(self.arch_vars) :]
        self.apply_update(self.w_opt, grads, self.weight_vars, c.w_grad_clip, c.w_weight_decay)
        return {"loss": loss, "accuracy": acc, "valid_loss": valid_loss, **logs}
