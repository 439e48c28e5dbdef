"""MNIST-1D, generated offline and cached."""

import random

import numpy as np
import pytest

from dfax.data import load_mnist1d
from dfax.data import mnist1d as mnist1d_module


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
  return tmp_path_factory.mktemp("dfax-cache")


def test_shapes_and_cache(cache, monkeypatch):
  monkeypatch.setenv("DFAX_CACHE_DIR", str(cache))
  np.random.seed(123)
  random.seed(123)
  before = (np.random.rand(), random.random())
  np.random.seed(123)
  random.seed(123)
  ds = load_mnist1d()
  assert (np.random.rand(), random.random()) == before  # global RNG state untouched
  assert ds.x_train.shape == (4000, 40) and ds.x_test.shape == (1000, 40)
  assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
  assert ds.num_classes == 10 and set(np.unique(ds.y_train)) == set(range(10))
  assert list(ds.y_train[:10]) == [2, 6, 4, 5, 6, 6, 6, 0, 3, 1]  # the published data set
  assert list(cache.glob("*.npz")) == [cache / "mnist1d_seed42_v1.npz"]
  again = load_mnist1d()  # from the cache
  for name in ("x_train", "y_train", "x_test", "y_test"):
    np.testing.assert_array_equal(getattr(ds, name), getattr(again, name))


def _fake_generator(calls):
  def generate(seed):
    calls.append(seed)
    rng = np.random.default_rng(seed)
    return {"x": rng.normal(size=(8, 40)).astype(np.float32), "y": np.arange(8, dtype=np.int32),
            "x_test": np.zeros((2, 40), np.float32), "y_test": np.zeros(2, np.int32)}
  return generate


def test_corrupt_cache_is_regenerated(tmp_path, monkeypatch):
  calls = []
  monkeypatch.setattr(mnist1d_module, "generate_mnist1d", _fake_generator(calls))
  path = tmp_path / "m1d.npz"
  path.write_bytes(b"garbage")
  ds = load_mnist1d(cache_path=path)
  assert calls == [42] and ds.x_train.shape == (8, 40)
  with np.load(path) as f:
    np.testing.assert_array_equal(f["x"], ds.x_train)


def test_seed_selects_cache_file(tmp_path, monkeypatch):
  calls = []
  monkeypatch.setattr(mnist1d_module, "generate_mnist1d", _fake_generator(calls))
  monkeypatch.setenv("DFAX_CACHE_DIR", str(tmp_path))
  a = load_mnist1d(seed=3)
  b = load_mnist1d(seed=3)
  load_mnist1d(seed=4, cache=False)
  assert calls == [3, 4] and (tmp_path / "mnist1d_seed3_v1.npz").is_file()
  assert not (tmp_path / "mnist1d_seed4_v1.npz").exists()
  np.testing.assert_array_equal(a.x_train, b.x_train)
