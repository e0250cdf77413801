"""A lean SGD with momentum for supernet weights.

One ``ResourceApplyMomentum`` op per variable (PyTorch's rule: buf = m * buf + g;
w -= lr * buf), instead of the ~25 graph ops per variable of a Keras optimizer: a supernet
has hundreds of variables, and the step graph (and its tracing time) shrinks by a third.
"""

from __future__ import annotations

import keras
import tensorflow as tf


class MomentumSGD:
    """SGD with (heavy-ball) momentum. ``learning_rate`` may be set between steps."""

    def __init__(self, learning_rate: float, momentum: float = 0.9, name: str = "sgd"):
        if not learning_rate > 0:
            raise ValueError(f"MomentumSGD: learning_rate must be > 0, got {learning_rate}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"MomentumSGD: momentum must be in [0, 1), got {momentum}")
        self.name = name
        self.momentum = float(momentum)
        self._lr = keras.Variable(float(learning_rate), trainable=False, name=f"{name}_lr")
        self._slots: dict[int, keras.Variable] = {}
        self._order: list[keras.Variable] = []

    @property
    def learning_rate(self) -> float:
        return float(keras.ops.convert_to_numpy(self._lr))

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        self._lr.assign(float(value))

    def build(self, variables) -> None:
        """Creates a momentum buffer per variable (zeros)."""
        for v in variables:
            if id(v) not in self._slots:
                slot = keras.Variable(
                    keras.ops.zeros(v.shape, v.dtype),
                    trainable=False,
                    name=f"{self.name}_{v.path.replace('/', '_')}_momentum",
                )
                self._slots[id(v)] = slot
                self._order.append(slot)

    @property
    def learning_rate_variable(self) -> keras.Variable:
        """The learning rate as a variable (read it inside a compiled step)."""
        return self._lr

    def momentum_buffer(self, variable) -> keras.Variable:
        """The momentum buffer of `variable` (built by :meth:`build`)."""
        return self._slots[id(variable)]

    @property
    def variables(self) -> list:
        """Learning rate and momentum buffers, in a stable order (for checkpoints)."""
        return [self._lr, *self._order]

    def apply(self, grads, variables, active=None) -> None:
        """One step. `active`: None, or per variable None (always updated) or a boolean
        scalar tensor; where it is False the variable and its momentum buffer keep their
        values (the op runs with gradient 0, momentum 1 and learning rate 0). Variables
        that share one `active` tensor share its scalars, so the mask costs one multiply
        per variable."""
        lr = self._lr.value
        if active is None:
            active = [None] * len(variables)
        scalars: dict[int, tuple] = {}
        for g, v, a in zip(grads, variables, active, strict=True):
            var_lr, momentum = lr, tf.constant(self.momentum, g.dtype)
            if a is not None:
                if id(a) not in scalars:
                    scalars[id(a)] = (
                        tf.cast(a, g.dtype),
                        tf.where(a, lr, tf.constant(0.0, lr.dtype)),
                        tf.where(a, momentum, tf.constant(1.0, g.dtype)),
                    )
                on, var_lr, momentum = scalars[id(a)]
                g = g * on
            tf.raw_ops.ResourceApplyMomentum(
                var=v.value.handle,
                accum=self._slots[id(v)].value.handle,
                lr=tf.cast(var_lr, g.dtype),  # float64 models: the rate is float32
                grad=g,
                momentum=momentum,
                use_nesterov=False,
            )
