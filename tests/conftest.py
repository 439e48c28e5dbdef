"""Shared test set-up: 8 host devices for sharding tests, offline data paths."""

import os
import pathlib

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TFDS_DATA_DIR", "/tmp/dfax-tfds-offline")

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
  if not SHARED_DATA.exists():
    raise FileNotFoundError(f"offline data expected at {SHARED_DATA}")
  return SHARED_DATA
