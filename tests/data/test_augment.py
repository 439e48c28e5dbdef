"""Random translation: shapes, zero fill, per-example shifts, resumable streams."""

import itertools

import numpy as np
import pytest

from dfax.data import augmented_batches, infinite_batches
from dfax.data.augment import random_translate


def _images(b=6, h=7, w=7):
  return np.random.default_rng(0).uniform(0.1, 1.0, (b, h, w, 1)).astype(np.float32)


def test_each_image_is_an_integer_shift_of_itself_with_zero_fill():
  x = _images()
  out = random_translate(x, 2, np.random.default_rng(3))
  assert out.shape == x.shape and out.dtype == x.dtype
  for orig, moved in zip(x[..., 0], out[..., 0]):
    matches = []
    for dy, dx in itertools.product(range(-2, 3), repeat=2):
      ref = np.zeros_like(orig)
      src = orig[max(0, -dy):orig.shape[0] - max(0, dy), max(0, -dx):orig.shape[1] - max(0, dx)]
      ref[max(0, dy):max(0, dy) + src.shape[0], max(0, dx):max(0, dx) + src.shape[1]] = src
      matches.append(np.array_equal(ref, moved))
    assert sum(matches) == 1  # exactly one shift in range explains the output


def test_shifts_differ_across_examples_and_zero_shift_is_identity():
  x = np.repeat(_images(1), 64, axis=0)
  out = random_translate(x, 2, np.random.default_rng(0))
  assert len({o.tobytes() for o in out}) > 10
  assert random_translate(x, 0, np.random.default_rng(0)) is x


def test_bad_input_names_the_fix():
  with pytest.raises(ValueError, match="augment_shift=0"):
    random_translate(np.zeros((4, 40), np.float32), 2, np.random.default_rng(0))
  with pytest.raises(ValueError, match=">= 0"):
    random_translate(_images(), -1, np.random.default_rng(0))


def test_augmented_stream_resumes_exactly():
  x, y = _images(20), np.arange(20, dtype=np.int32)
  full = augmented_batches(infinite_batches(x, y, 4, seed=1), 1, seed=1)
  first = [next(full) for _ in range(7)]
  resumed = augmented_batches(infinite_batches(x, y, 4, seed=1, start_step=5), 1, seed=1,
                              start_step=5)
  for (xa, ya), (xb, yb) in zip(first[5:], [next(resumed) for _ in range(2)]):
    np.testing.assert_array_equal(xa, xb)
    np.testing.assert_array_equal(ya, yb)
