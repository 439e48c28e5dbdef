"""MNIST from the offline IDX files in $DFAX_DATA_DIR/mnist (tests: ../shared/data/mnist)."""

import gzip
import shutil

import numpy as np
import pytest

from dfax.data import load_mnist, tfds_source
from dfax.data.mnist import MNIST_FILES, parse_idx, read_idx
from dfax.data import mnist as mnist_module

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="module")
def mnist(shared_data):
  return load_mnist(shared_data / "mnist", source="local")


def test_shapes_dtypes_and_range(mnist):
  assert mnist.x_train.shape == (60000, 28, 28, 1) and mnist.x_test.shape == (10000, 28, 28, 1)
  assert mnist.x_train.dtype == np.float32 and mnist.y_train.dtype == np.int32
  assert mnist.x_train.min() == 0.0 and mnist.x_train.max() == 1.0
  assert mnist.num_classes == 10 and mnist.name == "mnist"


def test_known_labels(mnist):
  assert mnist.y_train[0] == 5 and list(mnist.y_train[:5]) == [5, 0, 4, 1, 9]
  assert list(mnist.y_test[:3]) == [7, 2, 1]
  assert np.bincount(mnist.y_train).tolist() == TRAIN_COUNTS
  assert np.bincount(mnist.y_test).tolist() == TEST_COUNTS


def test_default_data_dir_finds_shared_data(shared_data, monkeypatch):
  monkeypatch.setenv("DFAX_DATA_DIR", str(shared_data))
  ds = load_mnist()  # $DFAX_DATA_DIR/mnist
  assert ds.y_train[0] == 5 and len(ds.y_test) == 10000


def test_data_dir_may_be_the_parent_folder(shared_data):
  assert load_mnist(shared_data, source="local").x_test.shape == (10000, 28, 28, 1)


def test_missing_files_error_names_them(tmp_path):
  with pytest.raises(FileNotFoundError) as info:
    load_mnist(tmp_path, source="local")
  message = str(info.value)
  assert str(tmp_path) in message and "DFAX_DATA_DIR" in message
  for name in MNIST_FILES.values():
    assert name in message
  with pytest.raises(FileNotFoundError):  # explicit data_dir: no silent tfds fallback
    load_mnist(tmp_path, source="auto")


def test_corrupt_file_is_a_clear_error(tmp_path, shared_data):
  for name in MNIST_FILES.values():
    shutil.copy(shared_data / "mnist" / name, tmp_path / name)
  with gzip.open(tmp_path / MNIST_FILES["y_test"], "wb") as f:
    f.write(b"\x00\x00\x08\x01\x00\x00\x27\x10" + bytes(100))  # says 10000 labels, has 100
  with pytest.raises(ValueError, match="truncated or corrupt"):
    load_mnist(tmp_path)
  (tmp_path / MNIST_FILES["y_test"]).write_bytes(b"not gzip")
  with pytest.raises(ValueError, match="cannot read"):
    load_mnist(tmp_path)


def test_parse_idx_roundtrip_and_magic():
  header = b"\x00\x00\x0c\x02" + (2).to_bytes(4, "big") + (3).to_bytes(4, "big")
  arr = parse_idx(header + np.arange(6, dtype=">i4").tobytes())
  np.testing.assert_array_equal(arr, np.arange(6).reshape(2, 3))
  assert arr.dtype == np.int32
  with pytest.raises(ValueError, match="bad magic"):
    parse_idx(b"\x01\x02\x03\x04")


def test_read_idx_plain_file(tmp_path, shared_data):
  with gzip.open(shared_data / "mnist" / MNIST_FILES["y_test"]) as f:
    (tmp_path / "labels-idx1-ubyte").write_bytes(f.read())
  assert read_idx(tmp_path / "labels-idx1-ubyte")[:3].tolist() == [7, 2, 1]


def test_auto_falls_back_to_prepared_tfds_and_scales(monkeypatch, tmp_path):
  monkeypatch.delenv("DFAX_DATA_DIR", raising=False)
  monkeypatch.setenv("DFAX_CACHE_DIR", str(tmp_path / "cache"))
  monkeypatch.setattr(mnist_module, "EMBEDDED_DIR", tmp_path / "nothing-shipped")
  monkeypatch.setattr(mnist_module.download_mnist, "__defaults__",
                      (None, ("http://127.0.0.1:9/",), 2.0))  # nothing listens: download fails
  images = np.full((4, 28, 28, 1), 255, np.uint8)
  labels = np.arange(4, dtype=np.int32)
  fake = mnist_module.Dataset(images, labels, images[:2], labels[:2], 10, "mnist")
  monkeypatch.setattr(tfds_source, "load_tfds", lambda name, data_dir=None, download=True: fake)
  ds = load_mnist()
  assert ds.x_train.dtype == np.float32 and ds.x_train.max() == 1.0 and len(ds.y_test) == 2
  assert load_mnist(source="tfds").x_train.max() == 1.0


def test_unknown_source():
  with pytest.raises(ValueError, match="source must be one of"):
    load_mnist(source="web")
