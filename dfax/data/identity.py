"""What data a run read: the resolved location and a fingerprint of the content.

A training run records this identity in its workdir (``data.json``) and a
resume compares it, so a run never trains half on one data set and half on
another (see docs/reliability.md). The fingerprint is the sha256 of the files'
bytes, or, for a folder larger than :data:`FULL_HASH_LIMIT`, of each file's
name, size and first and last MiB (a "headers and sizes" fingerprint).

Examples:
  ```python
  identity.mnist()  # {'source': 'files', 'path': '.../mnist_idx', 'fingerprint': 'sha256:...',
                    #  'files': {...: 9912422, ...}}
  ```
"""

from __future__ import annotations

import hashlib
import os
import pathlib
from collections.abc import Iterable

import numpy as np

FULL_HASH_LIMIT = 256 << 20
"""Folders up to this many bytes are hashed whole; bigger ones by names, sizes and ends."""
_EDGE = 1 << 20


def fingerprint_files(paths: Iterable[str | os.PathLike], root: str | os.PathLike) -> str:
  """``sha256:<hex>`` of the files (their paths relative to ``root``, sizes and bytes).

  Args:
    paths: the files.
    root: their paths are hashed relative to this folder, so a moved copy
      of the same files has the same fingerprint.

  Returns:
    ``"sha256:..."``; ``"sha256-partial:..."`` when the files are bigger than
    :data:`FULL_HASH_LIMIT` (names, sizes, first and last MiB of each).
  """
  files = sorted(pathlib.Path(p) for p in paths)
  total = sum(p.stat().st_size for p in files)
  whole = total <= FULL_HASH_LIMIT
  digest = hashlib.sha256()
  for path in files:
    size = path.stat().st_size
    digest.update(f"{os.path.relpath(path, root)}\0{size}\0".encode())
    with open(path, "rb") as f:
      if whole or size <= 2 * _EDGE:
        while chunk := f.read(1 << 22):
          digest.update(chunk)
      else:
        digest.update(f.read(_EDGE))
        f.seek(size - _EDGE)
        digest.update(f.read(_EDGE))
  return f"sha256{'' if whole else '-partial'}:{digest.hexdigest()}"


def files_identity(paths: Iterable[str | os.PathLike], root: str | os.PathLike,
                   source: str = "files") -> dict:
  """The identity of data read from ``paths`` under ``root``."""
  paths = [pathlib.Path(p) for p in paths]
  root = pathlib.Path(root)
  return {"source": source, "path": str(root.resolve()),
          "files": {os.path.relpath(p, root): p.stat().st_size for p in sorted(paths)},
          "fingerprint": fingerprint_files(paths, root)}


def arrays_identity(*arrays: np.ndarray, source: str = "arrays") -> dict:
  """The identity of in-memory data (generated, or from an unknown source): its arrays' hash."""
  digest = hashlib.sha256()
  for a in arrays:
    a = np.ascontiguousarray(a)
    digest.update(f"{a.dtype.str}{a.shape}".encode())
    digest.update(a.tobytes())
  return {"source": source, "path": None, "fingerprint": f"sha256:{digest.hexdigest()}"}


def mnist(data_dir: str | os.PathLike | None = None, source: str = "auto") -> dict | None:
  """The identity of the files ``load_mnist(data_dir, source)`` reads (None: read via tfds)."""
  from dfax.data import mnist as mnist_module  # noqa: PLC0415
  if source == "tfds":
    return tfds("mnist", data_dir)
  folder = mnist_module.resolve_folder(data_dir, source)
  paths = mnist_module.local_files(folder) if folder is not None else None
  if paths is None:
    return None
  return files_identity(paths.values(), pathlib.Path(next(iter(paths.values()))).parent)


def shakespeare(path: str | os.PathLike | None = None) -> dict:
  """The identity of the corpus file ``load_shakespeare(path)`` reads."""
  from dfax.data import shakespeare as sh  # noqa: PLC0415
  resolved = sh.default_path() if path is None else pathlib.Path(path).expanduser()
  if resolved.is_dir():
    resolved = resolved / sh.FILENAME
  return files_identity([resolved], resolved.parent)


def tfds(name: str, data_dir: str | os.PathLike | None = None) -> dict | None:
  """The identity of the prepared tensorflow-datasets folder ``<data_dir>/<name>``."""
  root = data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
  folder = pathlib.Path(root).expanduser() / name
  files = [p for p in folder.rglob("*") if p.is_file()] if folder.is_dir() else []
  if not files:
    return None
  return files_identity(files, folder, source="tfds")


def describe(identity: dict | None) -> str:
  """One phrase naming data: ``mnist from /data/mnist (sha256:1a2b3c4d5e6f)``."""
  if not identity:
    return "unrecorded data"
  where = f" from {identity['path']}" if identity.get("path") else \
      f" ({identity.get('source', 'in memory')})"
  return f"{identity.get('dataset', 'data')}{where} ({str(identity.get('fingerprint'))[:19]})"
