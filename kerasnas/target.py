"""A cost target instead of a hand-tuned penalty weight: ``--target=params:30k``.

A :class:`Target` names a resource and the cost the derived child must have:

    params:30k   flops:300k   mac:1.2M   latency:0.05ms   latency:50us

(counts take the suffixes k, M, G; latency is in milliseconds, or ``us``/``s``). It is read
without TensorFlow, so the commands check it before importing TensorFlow.

:class:`DualAscent` adapts the penalty weight so the child lands on the target. The search
is the constrained problem

    min task loss   subject to   |log(C(child) / T)| <= band,

where C(child) is the cost of the child the search would return now (SNAS: the argmax child,
not the expected cost of the distribution) and `band` a tolerance (default 0.05, i.e. about
5%). Its Lagrangian adds ``mu * |log(C / T)|``; the step differentiates it through the
penalty's relaxed cost, so the penalty weight of :func:`kerasnas.resource.penalty` (log
form) is ``lambda = mu * sign(e)`` with ``e = log(C(child) / T)`` outside the band and 0
inside it (the subgradient of ``max(|e| - band, 0)``, ramped over one band width:
``mu * sign(e) * clip(|e| / band - 1, 0, 1)``): it pushes the cost down when the child is
too big and up when it is too small, turns round in the step the child crosses the band,
and leaves a child inside the band alone. The multiplier follows projected dual ascent
after every step,

    mu <- max(0, mu + lr * (|log(C(child) / T)| - band)),

growing while the child is outside the band and relaxing inside it, so the pull is as
strong as the task's resistance needs and no stronger.

Why not plain dual ascent on the equality ``log(C / T) = 0`` (lambda <- lambda + lr * error):
measured on digits (params:40k, seed 0), its multiplier winds up while the cost comes down,
keeps pushing after the child crosses the target and the child was frozen at 0.75 of the
target when the architecture distribution sharpened (entropy 0.07 nats by epoch 10), with
lambda still positive. With the sign taken from the current error there is no wind-up to
undo. A smooth sign (``mu * tanh(e / band)``, tried next) still pushed inside the band: on
a small space whose children near the target cost 0.75, 1.01 and 1.41 of it, it pushed the
1.01 child down to 0.75 at the end of a search; the dead band keeps it. Why not TuNAS'
absolute-value reward ``Q + beta * |C / T - 1|`` with a fixed beta: it is the same shape
with the multiplier fixed, so beta must be tuned against the size of the task gradient,
which differs between data sets, resources and temperatures; here it adapts. And the error
is the derived child's, which is what the user asked for; the absolute reward acts on
sampled costs, whose mean is not the argmax child's.
"""

from __future__ import annotations

import dataclasses
import math
import re

from kerasnas.errors import SettingError
from kerasnas.names import RESOURCES

__all__ = ["DualAscent", "Target", "format_cost"]

_COUNT_SUFFIX = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9}
_TIME_SUFFIX = {"": 1.0, "ms": 1.0, "us": 1e-3, "µs": 1e-3, "s": 1e3}
_SYNTAX = re.compile(r"^\s*([a-z]+)\s*:\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-zA-Zµ]*)\s*$")
EXAMPLES = "params:30k, flops:300k, mac:1.2M or latency:0.05ms"


def format_cost(value: float, resource: str) -> str:
    """A cost for people: ``30.0k`` params, ``1.20M`` mult-adds, ``0.0500 ms``."""
    if resource == "latency":
        return f"{value:.4f} ms"
    for suffix, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.0f}"


@dataclasses.dataclass(frozen=True)
class Target:
    """A resource (one of params, flops, mac, latency) and its target cost: a count of
    params, mult-adds or memory-access elements, or milliseconds of LiteRT latency."""

    resource: str
    value: float

    def __post_init__(self):
        if self.resource not in RESOURCES:
            raise SettingError(
                f"{{target}}: the resource must be one of {', '.join(RESOURCES)}, "
                f"got {self.resource!r} (e.g. {EXAMPLES})"
            )
        if not (isinstance(self.value, (int, float)) and math.isfinite(self.value)) or not (
            self.value > 0
        ):
            raise SettingError(f"{{target}}: the cost must be a number > 0, got {self.value!r}")

    @classmethod
    def parse(cls, text: str) -> Target:
        """Reads ``<resource>:<number><unit>`` (see the module doc); raises SettingError
        naming ``--target`` and the accepted forms otherwise."""
        if isinstance(text, Target):
            return text
        m = _SYNTAX.match(str(text))
        if not m:
            raise SettingError(
                f"{{target}} must be <resource>:<cost>, e.g. {EXAMPLES}; got {text!r}"
            )
        resource, number, unit = m.groups()
        if resource not in RESOURCES:
            raise SettingError(
                f"{{target}}: the resource must be one of {', '.join(RESOURCES)}, "
                f"got {resource!r} in {text!r}"
            )
        units = _TIME_SUFFIX if resource == "latency" else _COUNT_SUFFIX
        if unit not in units:
            allowed = ", ".join(repr(u) for u in units if u)
            raise SettingError(
                f"{{target}}: unit {unit!r} in {text!r} is not one of {allowed} "
                f"(or none) for {resource}"
            )
        return cls(resource, float(number) * units[unit])

    def __str__(self) -> str:
        if self.resource == "latency":
            return f"latency:{self.value:g}ms"
        return f"{self.resource}:{format_cost(self.value, self.resource)}"

    def ratio(self, cost: float) -> float:
        """cost / target."""
        return float(cost) / self.value


class DualAscent:
    """The penalty weight of a cost target (see the module doc): after every step,
    ``mu = max(0, mu + lr * (|e| - band))`` and ``weight = mu * sign(e) * clip(|e| / band -
    1, 0, 1)`` with ``e = log(cost / target)`` (0 inside the band).

    Args:
      target: the target cost (the unit of the costs given to :meth:`update`).
      lr: the step size of the multiplier per training step, per unit of log-ratio.
      band: the tolerance on |log(cost / target)| (0.05: about 5%).
      mu: the starting multiplier.
    """

    def __init__(self, target: float, lr: float, band: float = 0.05, mu: float = 0.0):
        if not target > 0:
            raise ValueError(f"DualAscent: target must be > 0, got {target!r}")
        if not lr > 0:
            raise ValueError(f"DualAscent: lr must be > 0, got {lr!r}")
        if not band > 0:
            raise ValueError(f"DualAscent: band must be > 0, got {band!r}")
        self.target = float(target)
        self.lr = float(lr)
        self.band = float(band)
        self.mu = float(mu)
        self.weight = 0.0

    def error(self, cost: float) -> float:
        """log(cost / target); a cost of 0 counts as 1e-6 of the target."""
        return math.log(max(float(cost), 1e-6 * self.target) / self.target)

    def update(self, cost: float) -> float:
        """One dual step with the derived child's `cost`; returns the new penalty weight."""
        e = self.error(cost)
        self.mu = max(0.0, self.mu + self.lr * (abs(e) - self.band))
        self.weight = self.mu * math.copysign(min(max(abs(e) / self.band - 1.0, 0.0), 1.0), e)
        return self.weight

    def state(self) -> dict[str, float]:
        return {"mu": self.mu, "weight": self.weight}

    def set_state(self, state: dict[str, float]) -> None:
        self.mu = float(state.get("mu", 0.0))
        self.weight = float(state.get("weight", 0.0))
