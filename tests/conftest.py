"""Shared test set-up: 8 host devices for sharding tests, offline data paths.

The library never looks for ``../shared``; the tests point it there explicitly:
``DFAX_DATA_DIR`` defaults to ``<repo>/../shared/data`` (MNIST, Shakespeare)
when that exists. In a clone without it, MNIST tests read the copy shipped in
``dfax/data/mnist_idx`` and tests that need the Shakespeare corpus are skipped,
saying so. The download cache is a fresh temporary folder, so no test reads or
writes a user's ``~/.cache/dfax``.
"""

import atexit
import os
import pathlib
import shutil
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
SHIPPED_MNIST = REPO / "dfax" / "data" / "mnist_idx"


def _temporary_folder(prefix: str) -> pathlib.Path:
  """A fresh folder, removed when the test process exits."""
  folder = pathlib.Path(tempfile.mkdtemp(prefix=prefix))
  atexit.register(shutil.rmtree, folder, ignore_errors=True)
  return folder


def _test_data_dir() -> pathlib.Path:
  if os.environ.get("DFAX_DATA_DIR"):
    return pathlib.Path(os.environ["DFAX_DATA_DIR"])
  if SHARED_DATA.is_dir():
    return SHARED_DATA
  folder = _temporary_folder("dfax-test-data-")  # mnist/ -> the shipped copy
  (folder / "mnist").symlink_to(SHIPPED_MNIST, target_is_directory=True)
  return folder


TEST_DATA = _test_data_dir()

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TFDS_DATA_DIR", "/tmp/dfax-tfds-offline")
os.environ["DFAX_DATA_DIR"] = str(TEST_DATA)
if not os.environ.get("DFAX_CACHE_DIR"):
  os.environ["DFAX_CACHE_DIR"] = str(_temporary_folder("dfax-test-cache-"))

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
  """The test data folder: ``$DFAX_DATA_DIR``, ``../shared/data``, or the shipped MNIST."""
  if not (TEST_DATA / "mnist").is_dir():
    raise FileNotFoundError(f"offline test data expected at {TEST_DATA}/mnist (DFAX_DATA_DIR)")
  return TEST_DATA


def skip_without_shakespeare(data: pathlib.Path) -> pathlib.Path:
  """The corpus file under ``data``, or a skip that says how to provide it."""
  path = data / "shakespeare" / "shakespeare_works.txt.gz"
  if not path.is_file():
    pytest.skip(f"the Shakespeare corpus is not at {path}: set DFAX_DATA_DIR to a folder "
                "with shakespeare/shakespeare_works.txt.gz")
  return path


@pytest.fixture(scope="session")
def shakespeare_file(shared_data) -> pathlib.Path:
  """The Shakespeare corpus in the test data folder (skips the test when it is missing)."""
  return skip_without_shakespeare(shared_data)
