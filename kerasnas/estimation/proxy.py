"""Lower-fidelity estimates (the NAS survey's first cheap estimator): fewer epochs, part of
the training data, lower-resolution images, a narrower (and, for cells, shallower) child.

The score is the validation accuracy after the reduced training, measured at the reduced
resolution and width. It is biased low, and useful only while the *ranking* of
architectures stays that of full training (the survey's caveat; ``benchmarks/estimators.py
proxy`` measures the rank correlation on digits).

The trial keeps its full architecture: the reduction is made for the estimate only
(:meth:`~kerasnas.search_spaces.base.DiscreteSpace.reduce`), so a search's best trials can
be trained at full fidelity afterwards (``kerasnas-search --retrain_top``).
"""

from __future__ import annotations

from kerasnas.estimation.base import Estimate, Estimator, TrialContext

__all__ = ["LowFidelity"]


class LowFidelity(Estimator):
    """Trains each child for `epochs` epochs on `data_fraction` of the training split, at
    `resolution`, `width_multiplier` and `depth_multiplier`.

    Args:
      epochs: epochs of the proxy (None: the trial's budget), >= 1.
      data_fraction: fraction of the training split, in (0, 1]; the split's part 0 of
        ``round(1 / data_fraction)`` (examples 0, n, 2n, ... of its fixed order), so the
        fraction used is 1/n (1/2, 1/3, ...).
      resolution: the side in pixels of the images the child sees (the shorter side, the
        aspect kept), an int >= 1 and at most the data's; None: the data's. The child takes
        the data's images and downsamples them (bilinear with antialiasing) before its
        first layer, which is built for the smaller size, on the train and the validation
        split alike. On 8x8 digits: 6 (0.56 of the pixels), 4 (0.25), ...
      width_multiplier: filters / channels / FC units scaled by it, in (0, 1] (each count
        at least 1; the cell space's C at least 2).
      depth_multiplier: the cell space's number of cells scaled by it, in (0, 1] (at least
        3); the chain spaces (nasrl, metaqnn) have none: their depth is the architecture.
    """

    name = "proxy"

    def __init__(
        self,
        epochs: int | None = 1,
        data_fraction: float = 1.0,
        resolution: int | None = None,
        width_multiplier: float = 1.0,
        depth_multiplier: float = 1.0,
    ):
        if epochs is not None and (
            isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1
        ):
            raise ValueError(f"LowFidelity: epochs must be an int >= 1 or None, got {epochs!r}")
        if not 0.0 < data_fraction <= 1.0:
            raise ValueError(f"LowFidelity: data_fraction must be in (0, 1], got {data_fraction!r}")
        if resolution is not None and (
            isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1
        ):
            raise ValueError(
                f"LowFidelity: resolution must be an int >= 1 (pixels) or None, got {resolution!r}"
            )
        for what, value in (
            ("width_multiplier", width_multiplier),
            ("depth_multiplier", depth_multiplier),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"LowFidelity: {what} must be a number, got {value!r}")
            if not 0.0 < value <= 1.0:
                raise ValueError(f"LowFidelity: {what} must be in (0, 1], got {value!r}")
        self.epochs = epochs
        self.parts = max(1, round(1.0 / data_fraction))
        self.resolution = resolution
        self.width_multiplier = float(width_multiplier)
        self.depth_multiplier = float(depth_multiplier)

    @property
    def data_fraction(self) -> float:
        """The fraction of the training split in use (1/n)."""
        return 1.0 / self.parts

    def describe(self) -> str:
        epochs = "the budget's epochs" if self.epochs is None else f"{self.epochs} epoch(s)"
        text = f"proxy: {epochs} on {self.data_fraction:.3g} of the training data"
        if self.resolution is not None:
            text += f", images downsampled to a side of {self.resolution} px"
        if self.width_multiplier != 1.0:
            text += f", width x{self.width_multiplier:g}"
        if self.depth_multiplier != 1.0:
            text += f", cells x{self.depth_multiplier:g}"
        return text

    def image_size(self, input_shape) -> tuple[int, int] | None:
        """The (H, W) the child sees for images of `input_shape` (H, W, C); None: unchanged.
        ValueError naming `resolution` when it exceeds the images' shorter side."""
        if self.resolution is None:
            return None
        height, width = int(input_shape[0]), int(input_shape[1])
        side = min(height, width)
        if self.resolution > side:
            raise ValueError(
                f"LowFidelity: resolution {self.resolution} is larger than the images "
                f"({height}x{width}); it must be at most {side}"
            )
        size = (round(height * self.resolution / side), round(width * self.resolution / side))
        return None if size == (height, width) else size

    def reduce(self, trial: TrialContext):
        """``(space, arch, resolution)`` of the child trained for the estimate: the trial's
        reduced by the multipliers (``space.reduce``), and the (H, W) it sees (None: the
        data's)."""
        size = self.image_size(trial.bundle.input_shape)
        space, arch = trial.space.reduce(
            trial.arch,
            width=self.width_multiplier,
            depth=self.depth_multiplier,
            image_size=None if size is None else min(size),
        )
        return space, arch, size

    def estimate(self, trial: TrialContext) -> Estimate:
        epochs = trial.epochs if self.epochs is None else self.epochs
        reduced = (
            self.resolution is not None
            or self.width_multiplier != 1.0
            or self.depth_multiplier != 1.0
        )
        if reduced:
            space, arch, size = self.reduce(trial)
            if space is trial.space and size is None:
                model = trial.build(trial.arch)
            else:
                model = trial.build(arch, space=space, resolution=size)
        else:
            model = trial.build(trial.arch)
        for epoch in range(epochs):
            data = None
            if self.parts > 1:
                data = trial.bundle.train(epoch, trial.batch_size, part=(0, self.parts))
            trial.train_epoch(model, epoch, dataset=data)
        return Estimate(trial.evaluate(model), model, epochs * self.data_fraction)
