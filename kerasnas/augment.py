"""Data augmentation for training batches.

Only cutout (DeVries & Taylor, 2017) so far, as DARTS and SNAS use it when retraining:
one square per image is set to a fill value. Everything is stateless: the result depends
only on the images and the seed, so a resumed run sees the same augmented batches.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

__all__ = ["cutout"]


def cutout(
    images: tf.Tensor,
    length: int,
    seed: tf.Tensor | Sequence[int],
    fill: float | Sequence[float] = 0.0,
) -> tf.Tensor:
    """Cuts one `length` x `length` square out of every image, as DARTS' ``Cutout``.

    The square's centre is a uniformly random pixel; the square is clipped at the borders
    (rows ``cy - length // 2`` to ``cy + length // 2``, exclusive), so it may be smaller.

    Args:
      images: (B, H, W, C) float tensor.
      length: side of the square in pixels; 0 returns `images` unchanged.
      seed: a stateless seed, shape (2,) integers (e.g. ``[run_seed, step]``).
      fill: value(s) written into the square, a scalar or one per channel (C,). Pass the
        raw per-channel mean for raw images: after normalisation that is 0, which is what
        DARTS' cutout (applied after normalising) writes.

    Returns:
      A tensor like `images`.
    """
    if isinstance(length, bool) or not isinstance(length, int) or length < 0:
        raise ValueError(f"cutout: length must be an int >= 0, got {length!r}")
    if length == 0:
        return images
    images = tf.convert_to_tensor(images)
    shape = tf.shape(images)
    batch, height, width = shape[0], shape[1], shape[2]
    u = tf.random.stateless_uniform(tf.stack([2, batch]), tf.cast(seed, tf.int64))
    cy = tf.minimum(tf.cast(u[0] * tf.cast(height, tf.float32), tf.int32), height - 1)
    cx = tf.minimum(tf.cast(u[1] * tf.cast(width, tf.float32), tf.int32), width - 1)
    half = length // 2
    rows = tf.range(height)[None, :]
    cols = tf.range(width)[None, :]
    in_rows = (rows >= (cy - half)[:, None]) & (rows < (cy + half)[:, None])  # (B, H)
    in_cols = (cols >= (cx - half)[:, None]) & (cols < (cx + half)[:, None])  # (B, W)
    mask = (in_rows[:, :, None] & in_cols[:, None, :])[..., None]  # (B, H, W, 1)
    fill = tf.cast(tf.broadcast_to(fill, tf.shape(images)[-1:]), images.dtype)
    return tf.where(mask, fill, images)
