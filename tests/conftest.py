"""Shared test set-up: 8 host devices for sharding tests, offline data paths.

The library never looks for ``../shared``; the tests point it there explicitly:
``DFAX_DATA_DIR`` defaults to ``<repo>/../shared/data`` (MNIST, Shakespeare)
when that exists. In a clone without it, the tests read the copies shipped in
``dfax/data/mnist_idx`` and ``dfax/data/shakespeare_text``. The download cache
is a fresh temporary folder, so no test reads or writes a user's ``~/.cache/dfax``.
So is the XLA compilation cache the run's processes share (``JAX_COMPILATION_CACHE_DIR``).
Unless ``XLA_FLAGS`` is set, the CPU backend compiles at its lowest optimisation level.
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

# The suite compiles hundreds of small programs and runs each a few times: XLA's CPU backend
# at its lowest optimisation level compiles them faster (about 10-15% off a test's time on
# two cores). It computes the same functions; numeric comparisons pin precision and tolerances.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8 "
                      "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true")
os.environ.setdefault("TFDS_DATA_DIR", "/tmp/dfax-tfds-offline")
os.environ["DFAX_DATA_DIR"] = str(TEST_DATA)
if not os.environ.get("DFAX_CACHE_DIR"):
  os.environ["DFAX_CACHE_DIR"] = str(_temporary_folder("dfax-test-cache-"))
# One XLA compilation cache per test run, shared by the xdist workers and the CLI, notebook and
# benchmark subprocesses: many tests compile the same small programs again. It holds compiled
# executables only (what runs is the same). Size-bounded, so that jax locks it across processes.
if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
  os.environ["JAX_COMPILATION_CACHE_DIR"] = str(_temporary_folder("dfax-test-jax-cache-"))
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
  os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(4 << 30))

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
  """The test data folder: ``$DFAX_DATA_DIR``, ``../shared/data``, or the shipped MNIST."""
  if not (TEST_DATA / "mnist").is_dir():
    raise FileNotFoundError(f"offline test data expected at {TEST_DATA}/mnist (DFAX_DATA_DIR)")
  return TEST_DATA


SHIPPED_SHAKESPEARE = REPO / "dfax" / "data" / "shakespeare_text" / "shakespeare_works.txt.gz"


@pytest.fixture(scope="session")
def shakespeare_file(shared_data) -> pathlib.Path:
  """The Shakespeare corpus in the test data folder, else the copy shipped with dfax."""
  path = shared_data / "shakespeare" / "shakespeare_works.txt.gz"
  return path if path.is_file() else SHIPPED_SHAKESPEARE


# -- devices and precision ------------------------------------------------------
# Tests that compare DFA with jax.grad, or two ways of computing one gradient,
# need float32 matmuls at full precision: GPUs (TF32) and TPUs (bf16 passes)
# run them at reduced precision by default, which moves results by ~1e-3.
import jax  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")

HOST_DEVICES = 8  # XLA_FLAGS above


@pytest.fixture
def cpu_devices():
  """The 8 host CPU devices, with CPU as the default device for the test.

  On a GPU or TPU machine the CPU platform still has them (XLA_FLAGS), so
  sharding tests run there too, on the CPU, whatever the accelerator count.
  """
  devices = jax.devices("cpu")
  if len(devices) < HOST_DEVICES:
    pytest.fail(f"needs {HOST_DEVICES} host CPU devices: run with "
                f"XLA_FLAGS=--xla_force_host_platform_device_count={HOST_DEVICES} "
                "(tests/conftest.py sets it unless XLA_FLAGS is already set)")
  with jax.default_device(devices[0]):
    yield devices[:HOST_DEVICES]


@pytest.fixture
def host_platform(cpu_devices):
  """For tests whose code under test calls jax.devices(): they need CPU as the backend."""
  if jax.default_backend() != "cpu":
    pytest.skip(f"uses jax.devices() of the default backend ({jax.default_backend()}, "
                f"{jax.device_count()} devices), not the {HOST_DEVICES} host devices: "
                "run it with JAX_PLATFORMS=cpu")
  return cpu_devices
