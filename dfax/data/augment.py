"""Cheap, resumable image augmentation on host numpy batches.

A random translation of a few pixels is the classic regulariser for MLPs on
MNIST: it adds no parameters and makes the usual fully connected networks
generalise about half a point better. ``augmented_batches`` draws the shifts of
batch ``step`` from ``(seed, step)`` only, so a resumed run sees exactly the
batches an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from dfax.data.batching import Batch


def random_translate(images: np.ndarray, max_shift: int, rng: np.random.Generator) -> np.ndarray:
  """Shifts each image by its own random (dy, dx) in ``[-max_shift, max_shift]``, zero-filled.

  Args:
    images: a batch of shape ``(B, H, W)`` or ``(B, H, W, C)``.
    max_shift: largest shift in pixels along each axis (0 returns ``images`` unchanged).
    rng: the numpy generator the shifts are drawn from.

  Returns:
    An array of the same shape and dtype; pixels shifted in from outside are 0.

  Examples:
    >>> xb = np.ones((4, 28, 28, 1), np.float32)
    >>> shifted = random_translate(xb, 2, np.random.default_rng([0, 7]))
    >>> shifted.shape, shifted.dtype
    ((4, 28, 28, 1), dtype('float32'))
  """
  if max_shift < 0:
    raise ValueError(f"max_shift must be >= 0, got {max_shift}")
  if images.ndim not in (3, 4):
    raise ValueError(f"random_translate expects (B, H, W) or (B, H, W, C) images, got shape "
                     f"{images.shape}; set dataset.augment_shift=0 for non-image data")
  if max_shift == 0:
    return images
  b, h, w = images.shape[:3]
  pad = [(0, 0), (max_shift, max_shift), (max_shift, max_shift)] + [(0, 0)] * (images.ndim - 3)
  padded = np.pad(images, pad)
  dy, dx = rng.integers(-max_shift, max_shift + 1, size=(2, b))
  rows = (np.arange(h)[None, :] + max_shift - dy[:, None])[:, :, None]
  cols = (np.arange(w)[None, :] + max_shift - dx[:, None])[:, None, :]
  return padded[np.arange(b)[:, None, None], rows, cols]


def augmented_batches(batches: Iterator[Batch], max_shift: int, seed: int,
                      start_step: int = 0) -> Iterator[Batch]:
  """Applies ``random_translate`` to each ``(x, y)`` of a resumable batch stream.

  Args:
    batches: the stream, whose first batch is batch number ``start_step``.
    max_shift: largest shift in pixels.
    seed: augmentation seed; batch ``step`` uses ``np.random.default_rng([seed, step])``.
    start_step: the index of the stream's first batch.

  Returns:
    An iterator of augmented ``(x, y)`` pairs, labels unchanged.

  Examples:
    >>> from dfax.data import infinite_batches
    >>> x, y = np.ones((256, 28, 28), np.float32), np.zeros(256, np.int32)
    >>> s = 5   # resume at batch 5
    >>> stream = augmented_batches(infinite_batches(x, y, 128, 0, start_step=s), 2, 0,
    ...                            start_step=s)
    >>> xb, yb = next(stream)
    >>> xb.shape, yb.shape
    ((128, 28, 28), (128,))
  """
  for step, (x, y) in enumerate(batches, start=start_step):
    yield random_translate(x, max_shift, np.random.default_rng([seed, step])), y
