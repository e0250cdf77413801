"""A discrete search space as a keras-tuner ``HyperModel``, so stock tuners
(``RandomSearch``, ``BayesianOptimization``, ``Hyperband``) search it."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import keras_tuner

from kerasnas.search_spaces.base import DiscreteSpace, check_shape

__all__ = ["SpaceHyperModel"]


class SpaceHyperModel(keras_tuner.HyperModel):
    """A discrete space as a keras-tuner ``HyperModel``.

    ``build(hp)`` declares the space's Choices, repairs the assignment and returns the model
    compiled with `optimizer` ("adam" or "sgd", momentum 0.9) at `learning_rate`, sparse
    categorical cross-entropy from logits and the ``accuracy`` metric. The model takes raw
    images of `input_shape` (H, W, C); pass e.g. ``data.normalization_layer()`` as
    `preprocessing` (it is copied for every model). With `resolution` (H', W') the images
    are resized to it after the preprocessing (``proxy_resize``: bilinear with antialiasing,
    so downsampling averages), and the space's layers are built for (H', W'): the model
    still takes images of `input_shape` (a lower-fidelity proxy's child).
    """

    def __init__(
        self,
        space: DiscreteSpace,
        input_shape: Sequence[int],
        num_classes: int,
        preprocessing: keras.layers.Layer | None = None,
        optimizer: str = "adam",
        learning_rate: float = 1e-3,
        name: str | None = None,
        tunable: bool = True,
        resolution: Sequence[int] | None = None,
    ):
        super().__init__(name=name, tunable=tunable)
        if not isinstance(space, DiscreteSpace):
            raise ValueError(f"SpaceHyperModel: space must be a DiscreteSpace, got {space!r}")
        if optimizer not in ("adam", "sgd"):
            raise ValueError(
                f"SpaceHyperModel: optimizer must be 'adam' or 'sgd', got {optimizer!r}"
            )
        if not learning_rate > 0:
            raise ValueError(f"SpaceHyperModel: learning_rate must be > 0, got {learning_rate}")
        self.space = space
        self.input_shape = check_shape(input_shape, num_classes, "SpaceHyperModel")
        self.num_classes = int(num_classes)
        self.preprocessing = preprocessing
        self.optimizer = optimizer
        self.learning_rate = float(learning_rate)
        self.resolution = None
        if resolution is not None:
            size = tuple(int(v) for v in resolution)
            if len(size) != 2 or min(size) < 1:
                raise ValueError(
                    f"SpaceHyperModel: resolution must be (H, W) >= 1, got {resolution!r}"
                )
            self.resolution = None if size == self.input_shape[:2] else size

    def variant(
        self, space: DiscreteSpace | None = None, resolution: Sequence[int] | None = None
    ) -> SpaceHyperModel:
        """This hypermodel with another space (e.g. a reduced one) and/or `resolution`."""
        return SpaceHyperModel(
            self.space if space is None else space,
            self.input_shape,
            self.num_classes,
            self.preprocessing,
            self.optimizer,
            self.learning_rate,
            resolution=resolution,
        )

    def build(self, hp: keras_tuner.HyperParameters) -> keras.Model:
        arch = self.space.declare(hp)
        preprocessing = _copy_layer(self.preprocessing, self.input_shape)
        if self.resolution is not None:
            preprocessing = _then(preprocessing, self.resolution)
        model = self.space.build(arch, self.input_shape, self.num_classes, preprocessing)
        if self.optimizer == "adam":
            opt = keras.optimizers.Adam(self.learning_rate)
        else:
            opt = keras.optimizers.SGD(self.learning_rate, momentum=0.9)
        model.compile(
            optimizer=opt,
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        return model


def _copy_layer(
    layer: keras.layers.Layer | None, input_shape: tuple[int, ...]
) -> keras.layers.Layer | None:
    """A fresh copy of `layer` (config, and weights when it has any, e.g. an adapted
    ``Normalization``), so every model gets its own."""
    if layer is None:
        return None
    copy = layer.__class__.from_config(layer.get_config())
    if layer.weights:
        copy.build((None, *input_shape))
        copy.set_weights(layer.get_weights())
        copy.finalize_state()  # e.g. Normalization derives its mean from the weights
    return copy


def _then(layer: keras.layers.Layer | None, size: tuple[int, int]):
    """`layer` (if any), then a resize of its output to `size` (H, W)."""
    resize = keras.layers.Resizing(*size, antialias=True, name="proxy_resize")
    return resize if layer is None else (lambda x: resize(layer(x)))
