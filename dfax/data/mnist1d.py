"""MNIST-1D (Greydanus, 2020), generated offline by the ``mnist1d`` package.

``mnist1d.data.make_dataset(get_dataset_args())`` regenerates the published
data set exactly (4000 train / 1000 test signals of length 40, 10 classes)
without the network. Generating takes a few seconds, so the arrays are cached
as ``.npz`` under ``$DFAX_CACHE_DIR`` (default ``~/.cache/dfax``).
"""

from __future__ import annotations

import os
import pathlib
import random
import tempfile
import zipfile

import numpy as np

from dfax.data.batching import Dataset
from dfax.data.download import cache_dir

PUBLISHED_SEED = 42  # mnist1d's get_dataset_args() default: the published data set
_CACHE_VERSION = 1


def generate_mnist1d(seed: int | None = None) -> dict[str, np.ndarray]:
  """Generates MNIST-1D with the default (published) arguments.

  mnist1d seeds numpy's and Python's global generators; their states are
  restored afterwards, so calling this does not disturb other code.

  Args:
    seed: generation seed; ``None`` is the published data set (seed 42).

  Returns:
    Dict with float32 ``x`` (4000, 40), ``x_test`` (1000, 40) and int32
    ``y``, ``y_test``.

  Examples:
    >>> arrays = generate_mnist1d()   # a few seconds
    >>> arrays["x"].shape, arrays["x_test"].shape
    ((4000, 40), (1000, 40))
  """
  import mnist1d.data  # pylint: disable=g-import-not-at-top  (imports matplotlib)

  args = mnist1d.data.get_dataset_args()
  if seed is not None:
    args.seed = int(seed)
  np_state, py_state = np.random.get_state(), random.getstate()
  try:
    data = mnist1d.data.make_dataset(args)
  finally:
    np.random.set_state(np_state)
    random.setstate(py_state)
  return {
      "x": np.asarray(data["x"], np.float32), "y": np.asarray(data["y"], np.int32),
      "x_test": np.asarray(data["x_test"], np.float32),
      "y_test": np.asarray(data["y_test"], np.int32),
  }


def _save_atomic(path: pathlib.Path, arrays: dict[str, np.ndarray]) -> None:
  """Writes ``arrays`` to ``path`` so that concurrent readers never see a partial file."""
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp.npz")
  try:
    with os.fdopen(fd, "wb") as f:
      np.savez(f, **arrays)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def load_mnist1d(
    seed: int | None = None,
    *,
    cache: bool = True,
    cache_path: str | os.PathLike | None = None,
) -> Dataset:
  """Loads MNIST-1D: 4000 train / 1000 test 1-D signals of length 40, 10 classes.

  Args:
    seed: generation seed; ``None`` gives the published data set.
    cache: read/write the generated arrays from/to an ``.npz`` cache.
    cache_path: cache file; default
      ``cache_dir()/mnist1d_seed{seed}_v1.npz``.

  Returns:
    A ``Dataset`` with float32 ``x`` of shape ``(N, 40)`` and int32 labels.

  Examples:
    >>> ds = load_mnist1d()
    >>> ds.x_train.shape, ds.x_test.shape
    ((4000, 40), (1000, 40))
  """
  effective_seed = PUBLISHED_SEED if seed is None else int(seed)
  path = pathlib.Path(cache_path).expanduser() if cache_path is not None else (
      cache_dir() / f"mnist1d_seed{effective_seed}_v{_CACHE_VERSION}.npz")
  arrays = None
  if cache and path.is_file():
    try:
      with np.load(path) as f:
        arrays = {k: f[k] for k in ("x", "y", "x_test", "y_test")}
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
      arrays = None  # corrupt or foreign cache file: regenerate
  if arrays is None:
    arrays = generate_mnist1d(effective_seed)
    if cache:
      try:
        _save_atomic(path, arrays)
      except OSError:  # read-only home: still return the data
        pass
  return Dataset(arrays["x"], arrays["y"], arrays["x_test"], arrays["y_test"],
                 num_classes=10, name="mnist1d")
