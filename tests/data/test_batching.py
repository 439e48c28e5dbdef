"""Batch iterators: epoch coverage, determinism, exact resume."""

import itertools

import numpy as np
import pytest

from dfax.data import Dataset, infinite_batches, iterate_batches
from dfax.data.batching import epoch_permutation, num_batches


def _xy(n=10):
  return np.arange(n * 2, dtype=np.float32).reshape(n, 2), np.arange(n, dtype=np.int32)


def test_iterate_batches_in_order_keeps_remainder():
  x, y = _xy(10)
  batches = list(iterate_batches(x, y, 4, drop_remainder=False))
  assert [len(b[1]) for b in batches] == [4, 4, 2]
  np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), y)
  assert num_batches(10, 4) == 2 and num_batches(10, 4, drop_remainder=False) == 3


def test_iterate_batches_shuffled_covers_epoch_once():
  x, y = _xy(12)
  batches = list(iterate_batches(x, y, 4, rng=np.random.default_rng(0)))
  seen = np.concatenate([b[1] for b in batches])
  assert len(batches) == 3 and sorted(seen) == list(y) and not np.array_equal(seen, y)
  for xb, yb in batches:  # rows stay paired
    np.testing.assert_array_equal(xb[:, 0], 2 * yb)


def test_iterate_batches_drops_remainder_and_checks_lengths():
  x, y = _xy(10)
  assert [len(b[1]) for b in iterate_batches(x, y, 4, rng=np.random.default_rng(1))] == [4, 4]
  with pytest.raises(ValueError, match="differ in length"):
    next(iterate_batches(x, y[:5], 4))


def test_epoch_permutation_depends_on_seed_and_epoch():
  p = epoch_permutation(3, 0, 50)
  np.testing.assert_array_equal(p, epoch_permutation(3, 0, 50))
  assert sorted(p) == list(range(50))
  assert not np.array_equal(p, epoch_permutation(3, 1, 50))
  assert not np.array_equal(p, epoch_permutation(4, 0, 50))


@pytest.mark.parametrize("start", [0, 1, 4, 5, 7, 13])
def test_infinite_batches_resume_equals_uninterrupted(start):
  x, y = _xy(23)  # 5 batches of 4 per epoch, 3 dropped
  full = list(itertools.islice(infinite_batches(x, y, 4, seed=7), 20))
  resumed = list(itertools.islice(infinite_batches(x, y, 4, seed=7, start_step=start), 20 - start))
  for (xa, ya), (xb, yb) in zip(full[start:], resumed, strict=True):
    np.testing.assert_array_equal(xa, xb)
    np.testing.assert_array_equal(ya, yb)


def test_infinite_batches_epochs_are_permutations():
  x, y = _xy(12)
  stream = infinite_batches(x, y, 4, seed=0)
  epochs = [np.concatenate([next(stream)[1] for _ in range(3)]) for _ in range(3)]
  for e in epochs:
    assert sorted(e) == list(range(12))
  assert not np.array_equal(epochs[0], epochs[1])
  other = infinite_batches(x, y, 4, seed=1)
  assert not np.array_equal(np.concatenate([next(other)[1] for _ in range(3)]), epochs[0])


def test_infinite_batches_rejects_bad_arguments():
  x, y = _xy(3)
  with pytest.raises(ValueError, match="larger than the data set"):
    next(infinite_batches(x, y, 4, seed=0))
  with pytest.raises(ValueError, match="start_step"):
    next(infinite_batches(x, y, 2, seed=0, start_step=-1))


def test_dataset_container():
  x, y = _xy(10)
  ds = Dataset(x, y, x[:4], y[:4], num_classes=10, name="toy")
  assert ds.input_shape == (2,) and ds.num_train == 10 and ds.num_test == 4
  with pytest.raises(ValueError, match="x_test has 4 rows"):
    Dataset(x, y, x[:4], y[:3], num_classes=10, name="toy")
