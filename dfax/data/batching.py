"""The in-memory ``Dataset`` container and numpy batch iterators.

Everything here is plain numpy on the host: the training loop moves each batch
to the device. ``infinite_batches`` is a pure function of ``(seed, step)``, so a
run restored from a checkpoint at step ``s`` sees exactly the batches an
uninterrupted run would have seen from step ``s`` on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np

Batch = tuple[np.ndarray, np.ndarray]


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
  """A small supervised data set held in host memory.

  Attributes:
    x_train: training inputs, shape ``(N, ...)``.
    y_train: int32 training labels, shape ``(N,)``.
    x_test: test inputs, shape ``(M, ...)``.
    y_test: int32 test labels, shape ``(M,)``.
    num_classes: number of label values.
    name: a short name such as ``"mnist"``.

  Examples:
    >>> import dfax
    >>> ds = dfax.data.load_mnist()
    >>> ds.x_train.shape, ds.input_shape, ds.num_classes
    ((60000, 28, 28, 1), (28, 28, 1), 10)
  """

  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  num_classes: int
  name: str

  def __post_init__(self):
    for split in ("train", "test"):
      x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
      if len(x) != len(y):
        raise ValueError(f"{self.name}: x_{split} has {len(x)} rows but y_{split} has {len(y)}")

  @property
  def input_shape(self) -> tuple[int, ...]:
    """Shape of one example, without the batch dimension."""
    return tuple(self.x_train.shape[1:])

  @property
  def num_train(self) -> int:
    return len(self.x_train)

  @property
  def num_test(self) -> int:
    return len(self.x_test)


def _check_xy(x: np.ndarray, y: np.ndarray, batch_size: int) -> int:
  if len(x) != len(y):
    raise ValueError(f"x and y differ in length: {len(x)} vs {len(y)}")
  if batch_size <= 0:
    raise ValueError(f"batch_size must be positive, got {batch_size}")
  return len(x)


def num_batches(n: int, batch_size: int, drop_remainder: bool = True) -> int:
  """Number of batches one epoch over ``n`` examples yields.

  Args:
    n: number of examples.
    batch_size: examples per batch.
    drop_remainder: whether a last, smaller batch is dropped.

  Returns:
    ``n // batch_size`` when dropping the remainder, else ``ceil(n / batch_size)``.

  Examples:
    >>> num_batches(10, 4), num_batches(10, 4, drop_remainder=False)
    (2, 3)
  """
  return n // batch_size if drop_remainder else -(-n // batch_size)


def iterate_batches(
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    *,
    rng: np.random.Generator | None = None,
    drop_remainder: bool = True,
) -> Iterator[Batch]:
  """One epoch of ``(x, y)`` batches, shuffled when ``rng`` is given.

  Args:
    x: inputs, shape ``(N, ...)``.
    y: labels, shape ``(N, ...)``.
    batch_size: examples per batch.
    rng: numpy generator for the shuffle; ``None`` keeps the stored order
      (use this for evaluation).
    drop_remainder: drop the last batch when it is smaller than ``batch_size``.

  Returns:
    An iterator of ``(x_batch, y_batch)`` numpy pairs.

  Examples:
    >>> x, y = np.arange(10.0), np.arange(10)
    >>> [len(xb) for xb, yb in iterate_batches(x, y, 4, drop_remainder=False)]
    [4, 4, 2]
  """
  n = _check_xy(x, y, batch_size)
  order = rng.permutation(n) if rng is not None else None
  for b in range(num_batches(n, batch_size, drop_remainder)):
    sl = slice(b * batch_size, min((b + 1) * batch_size, n))
    if order is None:
      yield x[sl], y[sl]
    else:
      idx = order[sl]
      yield x[idx], y[idx]


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
  """The example order of one epoch, a pure function of ``(seed, epoch)``.

  Args:
    seed: the run's data seed (a non-negative int).
    epoch: epoch index, starting at 0.
    n: number of examples.

  Returns:
    A permutation of ``range(n)``.

  Examples:
    >>> bool(np.array_equal(epoch_permutation(0, 3, 10), epoch_permutation(0, 3, 10)))
    True
    >>> sorted(epoch_permutation(0, 3, 10).tolist()) == list(range(10))
    True
  """
  return np.random.default_rng([seed, epoch]).permutation(n)


def infinite_batches(
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    seed: int,
    *,
    start_step: int = 0,
) -> Iterator[Batch]:
  """An endless, resumable stream of shuffled full batches.

  Epoch ``e`` visits the examples in ``epoch_permutation(seed, e, N)`` order
  and yields ``N // batch_size`` batches (the remainder of each epoch is
  dropped), so batch ``step`` depends only on ``(seed, step)``. Starting at
  ``start_step=s`` gives exactly the stream an uninterrupted run yields after
  its first ``s`` batches: that is what checkpoint resume needs.

  Args:
    x: inputs, shape ``(N, ...)``.
    y: labels, shape ``(N, ...)``.
    batch_size: examples per batch, at most ``N``.
    seed: data-order seed (a non-negative int).
    start_step: index of the first batch to yield (the restored step).

  Returns:
    An infinite iterator of ``(x_batch, y_batch)`` numpy pairs.

  Examples:
    >>> x, y = np.arange(10.0), np.arange(10)
    >>> stream = infinite_batches(x, y, 4, seed=0)
    >>> batches = [next(stream)[1].tolist() for _ in range(3)]
    >>> resumed = infinite_batches(x, y, 4, seed=0, start_step=2)   # e.g. the restored step
    >>> next(resumed)[1].tolist() == batches[2]
    True
  """
  n = _check_xy(x, y, batch_size)
  if batch_size > n:
    raise ValueError(f"batch_size {batch_size} is larger than the data set ({n} examples)")
  if start_step < 0:
    raise ValueError(f"start_step must be >= 0, got {start_step}")
  per_epoch = n // batch_size
  epoch, first = divmod(int(start_step), per_epoch)
  while True:
    order = epoch_permutation(seed, epoch, n)
    for b in range(first, per_epoch):
      idx = order[b * batch_size:(b + 1) * batch_size]
      yield x[idx], y[idx]
    epoch, first = epoch + 1, 0
