"""Loading a data set through tensorflow-datasets, without TensorFlow.

``load_tfds`` reads a data set that tensorflow-datasets has prepared in the
``array_record`` format through ``builder.as_data_source`` (random access,
numpy only: no TensorFlow needed to *read*). When nothing is prepared in the
tfds ``data_dir`` it first checks, within a couple of seconds, that the hosts
the download needs can be reached; offline it fails at once with
``DataUnavailableError`` instead of hanging in download retries.

Note: tensorflow-datasets 4.9 needs TensorFlow to *prepare* most image data
sets from their raw download (MNIST and CIFAR read and encode images with
``tf.io`` / ``tf.image``). Without TensorFlow, either prepare them once
elsewhere (``tfds build mnist --file_format=array_record``) and copy the
``data_dir``, or use dfax's local-file loaders (``DFAX_DATA_DIR``).
"""

from __future__ import annotations

import importlib
import os
import socket
import sys
import threading
import urllib.parse
from collections.abc import Sequence
from typing import Any

import numpy as np

from dfax.data.batching import Dataset

DEFAULT_HOST = "storage.googleapis.com"  # where tfds and most of its image data sets download from
_HINT = (
    "To use local files instead, point dfax at a folder holding them: "
    "--config.data_dir=/path/to/data or the environment variable DFAX_DATA_DIR=/path/to/data "
    "(for MNIST, a folder with mnist/train-images-idx3-ubyte.gz, mnist/train-labels-idx1-ubyte.gz, "
    "mnist/t10k-images-idx3-ubyte.gz, mnist/t10k-labels-idx1-ubyte.gz). "
    "Or prepare the data set with tensorflow-datasets on a machine with network "
    "(tfds build {name} --file_format=array_record) and pass its data_dir (or set TFDS_DATA_DIR).")


def _hint(name: str) -> str:
  """How to get ``name`` without the network."""
  return _HINT.format(name=name)


class DataUnavailableError(RuntimeError):
  """A data set is neither on disk nor downloadable from here."""


def has_network(host: str = DEFAULT_HOST, port: int = 443, timeout: float = 2.0) -> bool:
  """Whether a TCP connection to ``host:port`` opens within ``timeout`` seconds.

  Name resolution runs in a daemon thread, so a resolver that hangs cannot
  hold the caller longer than ``timeout`` either.

  Args:
    host: host name to reach.
    port: TCP port.
    timeout: seconds to wait, for resolving and connecting together.

  Returns:
    True if the connection opened.

  Examples:
    >>> online = has_network("storage.googleapis.com", timeout=1.0)
    >>> isinstance(online, bool)
    True
  """
  result: list[bool] = []

  def attempt():
    try:
      with socket.create_connection((host, port), timeout=timeout):
        result.append(True)
    except OSError:
      result.append(False)

  thread = threading.Thread(target=attempt, daemon=True)
  thread.start()
  thread.join(timeout)
  return bool(result and result[0])


def import_tfds() -> Any:
  """Imports ``tensorflow_datasets``, patching a missing ``importlib_resources``.

  tensorflow-datasets 4.9.10 on Python >= 3.9 refers to the backport
  ``importlib_resources`` when it locates a builder's checksums, without
  declaring it as a dependency; the standard library's ``importlib.resources``
  provides the one name it uses (``abc.Traversable``).

  Returns:
    The ``tensorflow_datasets`` module.
  """
  try:
    importlib.import_module("importlib_resources")
  except ImportError:
    importlib.import_module("importlib.resources.abc")  # makes ``.abc`` an attribute
    sys.modules["importlib_resources"] = importlib.import_module("importlib.resources")
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  return tfds


def _download_hosts(builder: Any) -> list[str]:
  """Hosts a builder downloads from, read from its registered checksums."""
  try:
    urls = list(builder.url_infos or {})
  except Exception:  # noqa: BLE001  (no or unreadable checksums: fall back)
    urls = []
  hosts = sorted({urllib.parse.urlparse(u).hostname for u in urls} - {None})
  return hosts or [DEFAULT_HOST]


def records_to_arrays(records: Sequence[dict], keys: Sequence[str]) -> tuple[np.ndarray, ...]:
  """Stacks a sequence of feature dicts into one array per key.

  Args:
    records: random-access sequence of dicts (a tfds data source or a list).
    keys: the feature names to stack, e.g. ``("image", "label")``.

  Returns:
    One numpy array per key, with a leading dimension ``len(records)``.

  Examples:
    >>> records = [{"image": np.zeros((2, 2)), "label": 3}, {"image": np.ones((2, 2)), "label": 1}]
    >>> x, y = records_to_arrays(records, ("image", "label"))
    >>> x.shape, y.tolist()
    ((2, 2, 2), [3, 1])
  """
  n = len(records)
  columns: dict[str, list] = {k: [] for k in keys}
  chunk = 4096
  for start in range(0, n, chunk):
    idx = list(range(start, min(start + chunk, n)))
    if hasattr(records, "__getitems__"):  # tfds data sources: one batched read
      rows = records.__getitems__(idx)
    else:
      rows = [records[i] for i in idx]
    for row in rows:
      for k in keys:
        columns[k].append(np.asarray(row[k]))
  return tuple(np.stack(columns[k]) if n else np.zeros((0,)) for k in keys)


def _read_split(tfds: Any, builder: Any, split: str, keys: Sequence[str]) -> tuple[np.ndarray, ...]:
  """Reads one prepared split, through a data source or (with TF) ``as_dataset``."""
  try:
    return records_to_arrays(builder.as_data_source(split=split), keys)
  except NotImplementedError as e:  # prepared as tfrecord: only TensorFlow reads it
    try:
      importlib.import_module("tensorflow")
    except ImportError:
      raise DataUnavailableError(
          f"{builder.name} is prepared at {builder.data_dir} in a format that needs TensorFlow "
          "to read (tfrecord). Install tensorflow, or prepare it again with "
          "file_format='array_record' in another data_dir.") from e
    data = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
    return tuple(np.asarray(data[k]) for k in keys)


def _prepare(builder: Any, name: str) -> None:
  """Downloads and prepares ``builder`` (separate so tests can stub it out)."""
  try:
    builder.download_and_prepare()
  except ModuleNotFoundError as e:
    if e.name and e.name.split(".")[0] == "tensorflow":
      raise DataUnavailableError(
          f"tensorflow-datasets needs TensorFlow to prepare {name!r} from its raw download "
          "(the download itself is cached and will not be repeated). Install tensorflow, "
          f"or prepare it elsewhere. {_hint(name)}") from e
    raise


def load_tfds(
    name: str,
    *,
    data_dir: str | None = None,
    splits: tuple[str, str] = ("train", "test"),
    keys: tuple[str, str] | None = None,
    download: bool = True,
    timeout: float = 2.0,
) -> Dataset:
  """Loads a supervised tensorflow-datasets data set into a ``Dataset``.

  Arrays come back as tfds stores them (MNIST images: uint8, ``(N, 28, 28,
  1)``); labels are cast to int32. Preparing happens only when nothing is
  prepared in ``data_dir`` and the download hosts answer within ``timeout``.

  Args:
    name: tfds name, e.g. ``"mnist"`` or ``"cifar10"``.
    data_dir: tfds data directory; ``None`` uses tfds' default
      (``TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).
    splits: the ``(train, test)`` split names, e.g. ``("train[:90%]", "test")``.
    keys: ``(input, label)`` feature names; ``None`` takes the data set's
      supervised keys.
    download: whether to download and prepare when nothing is prepared.
    timeout: seconds the connectivity check may take.

  Returns:
    A ``Dataset``.

  Raises:
    DataUnavailableError: nothing prepared and no download possible (offline,
      ``download=False``, or preparing needs TensorFlow).

  Examples:
    Needs a data set prepared by tensorflow-datasets (or the network to
    prepare it), so it is not run as a doctest:

    >>> ds = load_tfds("mnist", data_dir="~/tensorflow_datasets")   # doctest: +SKIP
    >>> x = ds.x_train.astype("float32") / 255.0                     # doctest: +SKIP
  """
  tfds = import_tfds()
  if data_dir is not None:
    data_dir = os.path.expanduser(os.fspath(data_dir))
  builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
  if not builder.is_prepared():
    where = f"no prepared copy of {name!r} in {builder.data_dir}"
    if not download:
      raise DataUnavailableError(f"{where} and download=False. {_hint(name)}")
    hosts = _download_hosts(builder)
    offline = [h for h in hosts if not has_network(h, timeout=timeout)]
    if offline:
      raise DataUnavailableError(
          f"Cannot load {name!r} through tensorflow-datasets: no network ({', '.join(offline)} "
          f"not reachable within {timeout:g} s) and {where}. {_hint(name)}")
    _prepare(builder, name)
  if keys is None:
    keys = builder.info.supervised_keys
    if not keys or len(keys) != 2 or not all(isinstance(k, str) for k in keys):
      raise ValueError(f"{name} has no (input, label) supervised keys; pass keys=(...)")
  x_train, y_train = _read_split(tfds, builder, splits[0], keys)
  x_test, y_test = _read_split(tfds, builder, splits[1], keys)
  label = builder.info.features[keys[1]]
  num_classes = int(getattr(label, "num_classes", 0) or (max(y_train.max(), y_test.max()) + 1))
  return Dataset(x_train, y_train.astype(np.int32), x_test, y_test.astype(np.int32),
                 num_classes=num_classes, name=name)
