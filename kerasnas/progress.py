"""Progress output of the training loops, and the names of what they record.

Two modes, chosen by :func:`choose_mode` from ``verbose`` (0: silent; 1: ``tty`` when the
stream is a terminal, else ``plain``; 2: ``plain``):

- ``tty``: one line rewritten in place (carriage return) while an epoch runs: the step,
  running means of the epoch so far, seconds per step and the time left for the epoch and
  for the whole run; it is replaced by the epoch's line when the epoch ends.
- ``plain``: one line per epoch and nothing else, no control characters (for logs:
  ``kerasnas-search ... > log``); an epoch longer than ``plain_every`` seconds also gets a
  progress line every that many seconds.

Time left: the mean seconds per step of this process (the first call of the compiled step,
which traces it, is not a step time), times the steps left, plus the measured seconds of
each epoch's end (validation, checkpoint) for each epoch left; with a time budget, the
budget seconds left instead of the steps when they end first (see :func:`eta_seconds`).

The figures of an epoch record are grouped by what they measure (:func:`group_of`): the
groups order the epoch line and prefix the TensorBoard tags (``train/loss``,
``valid/sampled_supernet_valid_acc``, ``schedule/temperature``, ``architecture/entropy/<edge>``).
"""

from __future__ import annotations

import contextlib
import math
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from kerasnas.names import RESOURCES

__all__ = [
    "Progress",
    "choose_mode",
    "epoch_line",
    "eta_seconds",
    "format_duration",
    "group_of",
    "tensorboard_tag",
]

TTY, PLAIN = "tty", "plain"
# what a step's logs are called in an epoch record (running means over the epoch)
STEP_NAMES = {"loss": "train_loss", "accuracy": "train_acc"}
SCHEDULES = frozenset({"w_lr", "a_lr", "temperature", "drop_path", "budget_fraction"})
TIMES = frozenset({"seconds", "budget_seconds", "setup_seconds", "steps", "hessian_seconds"})
# the collapse figures (kerasnas.trainers.collapse), per-cell ones under param_free_share/
COLLAPSE = frozenset({"param_free_share", "hessian_eigenvalue", "hessian_convergence"})
CONTROLLER = frozenset({"reward", "controller_loss", "baseline"})
TARGET = frozenset({"penalty_weight", "penalty_multiplier", "target_ratio"})
# the epoch line's groups, in order; "time" is shown as the epoch's seconds and the ETA
LINE_GROUPS = ("train", "valid", "schedule", "architecture", "controller")


def choose_mode(verbose: int, stream: TextIO | None = None) -> str | None:
    """The progress mode of `verbose` on `stream` (default ``sys.stdout``): None (0,
    silent), ``tty`` (1 on a terminal) or ``plain`` (1 elsewhere, or 2)."""
    if not verbose:
        return None
    if verbose >= 2:
        return PLAIN
    stream = sys.stdout if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    try:
        return TTY if isatty is not None and isatty() else PLAIN
    except ValueError:  # a closed stream
        return PLAIN


def group_of(key: str) -> str:
    """What an epoch record's `key` measures: ``train`` (running means of the steps),
    ``valid``, ``schedule``, ``architecture`` (the distribution over ops), ``controller``
    (ENAS) or ``time``."""
    if key.startswith("train_"):
        return "train"
    if key.endswith("valid_acc"):
        return "valid"
    if key in SCHEDULES:
        return "schedule"
    if key in TIMES:
        return "time"
    if key in CONTROLLER:
        return "controller"
    if key in TARGET or key in {f"child_{r}" for r in RESOURCES}:
        return "architecture"  # a cost target's controller (kerasnas.target)
    if key.split("/")[0] in ("entropy", "prob", *COLLAPSE) or key.startswith("expected_"):
        return "architecture"
    return "train"  # what else a step logs (penalty, aux_loss, DARTS' valid_loss)


def tensorboard_tag(key: str) -> str:
    """The TensorBoard tag of an epoch record's `key`: its group, a slash, then the key
    without the group's own prefix (``train_loss`` -> ``train/loss``, ``entropy`` ->
    ``architecture/entropy_mean``, ``entropy/<edge>`` -> ``architecture/entropy/<edge>``)."""
    group = group_of(key)
    if group == "train" and key.startswith("train_"):
        key = key[len("train_") :]
    elif key == "entropy":
        key = "entropy_mean"  # beside the per-edge ones, entropy/<edge>
    return f"{group}/{key}"


def format_duration(seconds: float | None) -> str:
    """``45 s``, ``4:05`` (minutes:seconds) or ``1:02:03`` (hours); ``?`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = max(int(round(seconds)), 0)
    if seconds < 60:
        return f"{seconds} s"
    minutes, s = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}:{s:02d}"
    hours, m = divmod(minutes, 60)
    return f"{hours}:{m:02d}:{s:02d}"


def eta_seconds(
    steps_left: int,
    epochs_left: int,
    steps_per_epoch: int,
    step_seconds: float,
    epoch_end_seconds: float = 0.0,
    budget_left: float | None = None,
) -> float:
    """Seconds until the run ends: the `steps_left` of this epoch and `epochs_left` more
    epochs of `steps_per_epoch` steps at `step_seconds` each, plus `epoch_end_seconds`
    (validation, checkpoint: what follows the steps) for this epoch and each one left.
    With `budget_left` (seconds of a time budget left), the step seconds are at most that,
    and only the epochs those seconds reach end."""
    work = (steps_left + epochs_left * steps_per_epoch) * step_seconds
    epochs_ending = 1 + epochs_left
    if budget_left is not None and budget_left < work:
        work = max(budget_left, 0.0)
        per_epoch = steps_per_epoch * step_seconds
        beyond = work - steps_left * step_seconds  # seconds of the epochs after this one
        epochs_ending = 1 + (math.ceil(beyond / per_epoch - 1e-9) if beyond > 0 else 0)
    return work + epochs_ending * epoch_end_seconds


def _value(key: str, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"{key} {value}"
    if isinstance(value, int):
        return f"{key} {value}"
    if key.endswith("_acc"):
        return f"{key} {value:.4f}"
    if abs(value) >= 1e4:
        return f"{key} {value:,.0f}"
    return f"{key} {value:.4g}"


def epoch_line(prefix: str, record: dict[str, Any], tail: str = "") -> str:
    """One epoch's line: `prefix`, then the record's figures grouped (train | valid |
    schedule | architecture | controller; per-edge figures, which hold a ``/``, and times
    left out), then `tail`."""
    parts = []
    for group in LINE_GROUPS:
        shown = [
            _value(k, v)
            for k, v in record.items()
            if k != "epoch" and "/" not in k and group_of(k) == group
        ]
        if shown:
            parts.append(" ".join(shown))
    text = f"{prefix}: " + " | ".join(parts)
    return f"{text} | {tail}" if tail else text


class Progress:
    """Renders a training loop's progress (see the module doc).

    Args:
      epochs: the run's epochs (with a time budget: the most it may do).
      steps_per_epoch: steps of a full epoch.
      mode: ``tty``, ``plain`` or None (silent); see :func:`choose_mode`.
      time_budget: seconds of the run's time budget, or None.
      stream: where lines go (default ``sys.stdout`` at each write).
      clock: seconds, monotonic (tests may replace it).
      plain_every: ``plain`` mode: seconds between progress lines inside one epoch.
    """

    def __init__(
        self,
        epochs: int,
        steps_per_epoch: int,
        mode: str | None,
        time_budget: float | None = None,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.perf_counter,
        plain_every: float = 300.0,
    ):
        self.epochs = epochs
        self.steps_per_epoch = max(int(steps_per_epoch), 1)
        self.mode = mode
        self.time_budget = time_budget
        self._stream = stream
        self.clock = clock
        self.plain_every = plain_every
        self.step_seconds_total = 0.0  # seconds of the steps timed in this process
        self.steps_timed = 0
        self.epoch_end_seconds: list[float] = []  # per epoch of this process
        self._excluded = 0.0  # start-up seconds inside the interval being timed
        self._last = clock()
        self._epoch = 0
        self._steps = 0
        self._budget_spent: float | None = None
        self._width = 0  # of the tty line last written
        self._last_plain = clock()

    @property
    def stream(self) -> TextIO:
        return sys.stdout if self._stream is None else self._stream

    # -- measurements --------------------------------------------------------------------------
    def exclude(self, seconds: float) -> None:
        """Start-up `seconds` (tracing) spent in the interval being timed: not a step's or an
        epoch end's time."""
        self._excluded += seconds

    @property
    def step_seconds(self) -> float | None:
        """Mean seconds per step so far (None before a step was timed)."""
        return self.step_seconds_total / self.steps_timed if self.steps_timed else None

    def epoch_end_estimate(self) -> float:
        """Seconds an epoch's end takes: the mean over this process's epochs, the first one
        left out once there are others (its evaluations are traced)."""
        ends = self.epoch_end_seconds[1:] or self.epoch_end_seconds
        return sum(ends) / len(ends) if ends else 0.0

    def eta(self) -> tuple[float | None, float | None]:
        """Seconds left of the epoch (its steps) and of the run; None before a step was timed."""
        t = self.step_seconds
        if t is None:
            return None, None
        steps_left = max(self.steps_per_epoch - self._steps, 0)
        budget_left = None
        if self.time_budget is not None and self._budget_spent is not None:
            budget_left = max(self.time_budget - self._budget_spent, 0.0)
        epoch = steps_left * t if budget_left is None else min(steps_left * t, budget_left)
        run = eta_seconds(
            steps_left,
            max(self.epochs - self._epoch - 1, 0),
            self.steps_per_epoch,
            t,
            self.epoch_end_estimate(),
            budget_left,
        )
        return epoch, run

    def _interval(self) -> float:
        now = self.clock()
        seconds = now - self._last - self._excluded
        self._last, self._excluded = now, 0.0
        return max(seconds, 0.0)

    # -- the loop's calls ----------------------------------------------------------------------
    def begin_epoch(self, epoch: int) -> None:
        """Epoch `epoch` (0-based) starts."""
        self._epoch, self._steps = epoch, 0
        self._interval()
        self._last_plain = self.clock()

    def step(
        self,
        steps: int,
        means: dict[str, float],
        timed: bool = True,
        budget_spent: float | None = None,
    ) -> None:
        """After the `steps`-th step of the epoch; `means` are the running means of the
        epoch so far; `timed` False: the step was start-up (tracing), not a step time;
        `budget_spent`: seconds of the time budget counted so far."""
        seconds = self._interval()
        if timed:
            self.step_seconds_total += seconds
            self.steps_timed += 1
        else:  # start-up is not progress: the plain mode's interval starts after it
            self._last_plain = self.clock()
        self._steps = steps
        self._budget_spent = budget_spent
        if self.mode == TTY:
            self._write_tty(self._status(means))
        elif self.mode == PLAIN and self.clock() - self._last_plain >= self.plain_every:
            self._last_plain = self.clock()
            self._print(f"  {self._status(means)}")

    def end_epoch(self, record: dict[str, Any], of: str, seconds: float | None = None) -> None:
        """Epoch `record` is complete (validated, checkpointed; it took `seconds`): its line
        replaces the live one, with the time left for the run. `of` follows the epoch
        number (``/30``)."""
        self.epoch_end_seconds.append(self._interval())
        if "budget_seconds" in record:
            self._budget_spent = record["budget_seconds"]
        tail = [] if seconds is None else [f"{seconds:.1f} s"]
        if "budget_fraction" in record:
            tail.append(f"budget {100 * record['budget_fraction']:.0f}% spent")
        left = self.run_left(record["epoch"])
        if left:  # None: unknown; 0: the run is over
            tail.append(f"run ETA {format_duration(left)}")
        self._print(epoch_line(f"epoch {record['epoch']}{of}", record, ", ".join(tail)))

    def run_left(self, epochs_done: int) -> float | None:
        """Seconds left of the run after `epochs_done` epochs (0 when it is over; None
        before a step was timed)."""
        t = self.step_seconds
        budget_left = None
        if self.time_budget is not None and self._budget_spent is not None:
            budget_left = max(self.time_budget - self._budget_spent, 0.0)
        if epochs_done >= self.epochs or budget_left == 0.0:
            return 0.0
        if t is None:
            return None
        return eta_seconds(
            self.steps_per_epoch,
            self.epochs - epochs_done - 1,
            self.steps_per_epoch,
            t,
            self.epoch_end_estimate(),
            budget_left,
        )

    @contextlib.contextmanager
    def compiling(self, what: str, note: str = "") -> Iterator[None]:
        """Prints ``compiling <what> (<note>) ...`` before the block and how long it took
        after (on the same line on a terminal, on the next one in ``plain`` mode)."""
        if self.mode is None:
            yield
            return
        self.clear()
        text = f"compiling {what}" + (f" ({note})" if note else "") + " ..."
        t = self.clock()
        if self.mode == TTY:
            self.stream.write(text)
            self.stream.flush()
        else:
            self._print(text)
        ok = False
        try:
            yield
            ok = True
        finally:
            seconds = self.clock() - t
            if self.mode == TTY:
                self._print(f" {seconds:.0f} s" if ok else " stopped")
            elif ok:
                self._print(f"compiled {what} in {seconds:.0f} s")

    def clear(self) -> None:
        """Ends a live tty line (so that other output starts on a line of its own)."""
        if self.mode == TTY and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0

    # -- rendering -------------------------------------------------------------------------------
    def _status(self, means: dict[str, float]) -> str:
        of = f"/{self.epochs}" if self.time_budget is None else ""
        parts = [f"epoch {self._epoch + 1}{of}", f"step {self._steps}/{self.steps_per_epoch}"]
        t = self.step_seconds
        if t is not None:  # before the figures: a narrow terminal cuts the line's end
            parts.append(f"{t:.2f} s/step")
            epoch, run = self.eta()
            parts.append(f"epoch ETA {format_duration(epoch)}, run ETA {format_duration(run)}")
        parts += [_value(STEP_NAMES.get(k, k), v) for k, v in means.items()]
        return "  ".join(parts)

    def _write_tty(self, text: str) -> None:
        width = max(shutil.get_terminal_size((100, 24)).columns - 1, 20)
        text = text[:width]
        pad = max(self._width - len(text), 0)
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()
        self._width = len(text)

    def _print(self, text: str) -> None:
        if self.mode == TTY and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self._width = 0
        self.stream.write(text + "\n")
        self.stream.flush()
