"""MNIST's shipped copy, its cache and its checked download (served from 127.0.0.1)."""

import functools
import gzip
import hashlib
import http.server
import threading

import numpy as np
import pytest

from dfax.data import MNIST_SHA256, ChecksumError, download, load_mnist
from dfax.data.mnist import MNIST_FILES
from dfax.data import mnist as mnist_module
from dfax.data import tfds_source


def _idx(array: np.ndarray) -> bytes:
  header = b"\x00\x00\x08" + bytes([array.ndim]) + b"".join(
      int(d).to_bytes(4, "big") for d in array.shape)
  return header + array.astype(np.uint8).tobytes()


@pytest.fixture()
def tiny_mnist(tmp_path):
  """A 6-train / 3-test MNIST-shaped set as the four gzipped files, and their sha256."""
  rng = np.random.default_rng(0)
  arrays = {"x_train": rng.integers(0, 256, (6, 28, 28)), "y_train": np.arange(6) % 10,
            "x_test": rng.integers(0, 256, (3, 28, 28)), "y_test": np.array([7, 2, 1])}
  folder = tmp_path / "served"
  folder.mkdir()
  checksums = {}
  for key, name in MNIST_FILES.items():
    raw = _idx(arrays[key])
    (folder / name).write_bytes(gzip.compress(raw))
    checksums[name] = hashlib.sha256(raw).hexdigest()
  return folder, checksums


class _Quiet(http.server.SimpleHTTPRequestHandler):

  def log_message(self, *args):  # keep the test output clean
    pass


@pytest.fixture()
def server(tiny_mnist):
  """An HTTP server on 127.0.0.1 serving the tiny files; yields its base URL."""
  folder, _ = tiny_mnist
  httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                          functools.partial(_Quiet, directory=str(folder)))
  thread = threading.Thread(target=httpd.serve_forever, daemon=True)
  thread.start()
  yield f"http://127.0.0.1:{httpd.server_address[1]}/"
  httpd.shutdown()
  httpd.server_close()


@pytest.fixture()
def no_local_copy(monkeypatch, tmp_path, tiny_mnist, server):
  """No $DFAX_DATA_DIR, no shipped copy, an empty cache; mirrors = the local server."""
  monkeypatch.delenv("DFAX_DATA_DIR", raising=False)
  monkeypatch.setenv("DFAX_CACHE_DIR", str(tmp_path / "cache"))
  monkeypatch.setattr(mnist_module, "EMBEDDED_DIR", tmp_path / "nothing-shipped")
  monkeypatch.setattr(mnist_module, "MNIST_SHA256", tiny_mnist[1])
  monkeypatch.setattr(mnist_module, "MNIST_MIRRORS", (server,))
  monkeypatch.setattr(mnist_module.download_mnist, "__defaults__", (None, (server,), 5.0))
  return tmp_path / "cache" / "mnist"


def test_shipped_copy_is_the_default_and_matches_its_checksums(monkeypatch):
  monkeypatch.delenv("DFAX_DATA_DIR", raising=False)
  for name, digest in MNIST_SHA256.items():
    assert download.content_sha256(mnist_module.EMBEDDED_DIR / name) == digest
  ds = load_mnist()
  assert ds.x_train.shape == (60000, 28, 28, 1) and list(ds.y_test[:3]) == [7, 2, 1]


def test_checksums_match_the_shared_copy(shared_data):
  for name, digest in MNIST_SHA256.items():
    assert download.content_sha256(shared_data / "mnist" / name) == digest


def test_auto_downloads_into_the_cache_then_reads_it_offline(no_local_copy, tiny_mnist):
  ds = load_mnist()
  assert len(ds.x_train) == 6 and list(ds.y_test) == [7, 2, 1]
  assert sorted(p.name for p in no_local_copy.iterdir()) == sorted(MNIST_FILES.values())
  # The cache is used from now on: the server's files may change, nothing is fetched again.
  (tiny_mnist[0] / MNIST_FILES["y_test"]).write_bytes(b"changed")
  assert list(load_mnist(source="local").y_test) == [7, 2, 1]


def test_corrupted_download_is_rejected_and_not_kept(no_local_copy, tiny_mnist):
  served, _ = tiny_mnist
  name = MNIST_FILES["y_train"]
  (served / name).write_bytes(gzip.compress(_idx(np.arange(6) % 10 + 1)))  # valid IDX, wrong labels
  with pytest.raises(ChecksumError, match="sha256"):
    load_mnist()
  assert not (no_local_copy / name).exists() and not (no_local_copy / (name + ".part")).exists()
  (served / name).write_bytes(b"not gzip at all")
  with pytest.raises(ChecksumError, match="not a valid file"):
    load_mnist(source="download")


def test_a_corrupt_cached_file_is_fetched_again(no_local_copy, tiny_mnist):
  load_mnist(source="download")
  (no_local_copy / MNIST_FILES["x_test"]).write_bytes(gzip.compress(b"garbage"))
  assert len(load_mnist(source="download").x_test) == 3


def test_unreachable_mirrors_fall_back_to_tfds_with_a_clear_error(no_local_copy, monkeypatch):
  monkeypatch.setattr(mnist_module.download_mnist, "__defaults__",
                      (None, ("http://127.0.0.1:9/",), 2.0))  # port 9: nothing listens

  def nothing_prepared(name, data_dir=None, download=True):
    assert not download  # tfds is only read, never asked to prepare
    raise tfds_source.DataUnavailableError("nothing prepared")

  monkeypatch.setattr(tfds_source, "load_tfds", nothing_prepared)
  with pytest.raises(tfds_source.DataUnavailableError, match="download failed"):
    load_mnist()


def test_missing_file_on_the_server_names_the_url(tmp_path, server):
  with pytest.raises(OSError, match="could not download nope.gz.*127.0.0.1"):
    download.fetch_file("nope.gz", "0" * 64, [server], tmp_path)


def test_library_never_looks_beside_the_checkout(no_local_copy, shared_data, monkeypatch):
  # ../shared/data exists next to this checkout; with no local copy configured the loader
  # must not find it, and `source="local"` reports what it tried.
  assert (shared_data / "mnist").is_dir()
  assert mnist_module.default_data_dir() is None
  with pytest.raises(FileNotFoundError, match="DFAX_DATA_DIR"):
    load_mnist(source="local")
