"""Shared test set-up: 8 host devices for sharding tests, offline data paths.

The library never looks for ``../shared``; the tests point it there explicitly:
``DFAX_DATA_DIR`` defaults to ``<repo>/../shared/data`` (MNIST, Shakespeare),
and the download cache to a fresh temporary folder, so no test reads or writes
a user's ``~/.cache/dfax``.
"""

import os
import pathlib
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TFDS_DATA_DIR", "/tmp/dfax-tfds-offline")
os.environ.setdefault("DFAX_DATA_DIR", str(SHARED_DATA))
os.environ.setdefault("DFAX_CACHE_DIR", tempfile.mkdtemp(prefix="dfax-test-cache-"))

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
  path = pathlib.Path(os.environ["DFAX_DATA_DIR"])
  if not (path / "mnist").is_dir():
    raise FileNotFoundError(f"offline test data expected at {path} (set DFAX_DATA_DIR)")
  return path
