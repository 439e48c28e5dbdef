"""MNIST from the four standard IDX files: shipped with dfax, local, downloaded, or tfds.

The files are the ones LeCun et al. distribute (and tfds downloads),
``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``,
``t10k-images-idx3-ubyte.gz`` and ``t10k-labels-idx1-ubyte.gz``,
gzipped or not. ``load_mnist()`` with no arguments reads, in order:
``$DFAX_DATA_DIR/mnist`` when the variable is set (a set variable that names
no usable folder is an error, not skipped); else the copy shipped inside the
package (``dfax/data/mnist_idx``, about 11 MB); the user cache
(``dfax.data.download.cache_dir("mnist")``); a download of the four files into
that cache, each checked against its sha256 (no TensorFlow needed); and last
tensorflow-datasets, for a user who has MNIST prepared there.
"""

from __future__ import annotations

import gzip
import os
import pathlib

import numpy as np

from dfax.data import download
from dfax.data.batching import Dataset

MNIST_FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
SOURCES = ("auto", "local", "download", "tfds")

EMBEDDED_DIR = pathlib.Path(__file__).resolve().parent / "mnist_idx"
"""The copy of the four files shipped inside the package."""

# sha256 of each file's uncompressed content (whose MD5s are the canonical
# 6bbc9ace..., a25bea73..., 2646ac64..., 27ae3e4e...).
MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte.gz": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte.gz": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte.gz": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
MNIST_MIRRORS = (
    "https://storage.googleapis.com/cvdf-datasets/mnist/",  # the one tensorflow-datasets uses
    "https://ossci-datasets.s3.amazonaws.com/mnist/",       # the one torchvision uses
)


def parse_idx(data: bytes, what: str = "IDX data") -> np.ndarray:
  """Parses the bytes of one (uncompressed) IDX file.

  The header is two zero bytes, a type code, the number of dimensions, then
  one big-endian uint32 per dimension; the values follow, big-endian.

  Args:
    data: the file's bytes.
    what: name used in error messages (e.g. the file path).

  Returns:
    The array, in native byte order.

  Raises:
    ValueError: bad magic number or a size that does not match the header.

  Examples:
    >>> data = bytes([0, 0, 0x08, 1, 0, 0, 0, 3, 5, 0, 4])   # uint8, 1 dim of size 3
    >>> parse_idx(data)
    array([5, 0, 4], dtype=uint8)
  """
  if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
    raise ValueError(f"{what}: not an IDX file (bad magic number {data[:4]!r})")
  ndim = data[3]
  header = 4 + 4 * ndim
  if len(data) < header:
    raise ValueError(f"{what}: truncated IDX header")
  shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
  dtype = np.dtype(_IDX_DTYPES[data[2]])
  expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
  if len(data) != expected:
    raise ValueError(f"{what}: IDX header says shape {shape} ({expected} bytes) "
                     f"but the file has {len(data)} bytes (truncated or corrupt)")
  return np.frombuffer(data, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike) -> np.ndarray:
  """Reads one IDX file, gunzipping it when its name ends in ``.gz``.

  Args:
    path: path to the file.

  Returns:
    The parsed array.

  Examples:
    >>> images = read_idx(EMBEDDED_DIR / "t10k-images-idx3-ubyte.gz")   # the shipped copy
    >>> images.shape, images.dtype
    ((10000, 28, 28), dtype('uint8'))
  """
  path = pathlib.Path(path)
  opener = gzip.open if path.suffix == ".gz" else open
  try:
    with opener(path, "rb") as f:
      data = f.read()
  except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
    raise ValueError(f"{path}: cannot read ({e})") from e
  return parse_idx(data, str(path))


def default_data_dir(name: str = "mnist") -> pathlib.Path | None:
  """The folder ``$DFAX_DATA_DIR/<name>``, or None when the variable is unset.

  Args:
    name: subfolder name, e.g. ``"mnist"`` or ``"shakespeare"``.

  Returns:
    ``$DFAX_DATA_DIR/<name>`` when the variable is set (whether or not the
    folder exists), else None.

  Examples:
    >>> folder = default_data_dir("shakespeare")   # $DFAX_DATA_DIR/shakespeare, or None
    >>> folder is None or folder.name == "shakespeare"
    True
  """
  env = os.environ.get("DFAX_DATA_DIR")
  return pathlib.Path(env).expanduser() / name if env else None


def _find(folder: pathlib.Path, filename: str) -> pathlib.Path | None:
  for candidate in (folder / filename, folder / filename[:-len(".gz")]):
    if candidate.is_file():
      return candidate
  return None


def _local_paths(data_dir: pathlib.Path) -> dict[str, pathlib.Path] | None:
  """The four file paths in ``data_dir`` (or ``data_dir/mnist``), None if any is missing."""
  for folder in (data_dir, data_dir / "mnist"):
    paths = {k: _find(folder, f) for k, f in MNIST_FILES.items()}
    if all(paths.values()):
      return paths
  return None


def _missing_error(data_dir: pathlib.Path | None) -> FileNotFoundError:
  names = ", ".join(MNIST_FILES.values())
  where = f"in {data_dir}" if data_dir else "(no data_dir given, DFAX_DATA_DIR unset)"
  return FileNotFoundError(
      f"MNIST files not found {where}. Expected the four IDX files {names} "
      "(gzipped or not). Pass data_dir=... (--config.data_dir), set DFAX_DATA_DIR to a folder "
      "with an mnist/ subfolder, or use source='auto' (the copy shipped with dfax, else a "
      "download) or source='tfds'.")


def load_mnist_local(data_dir: str | os.PathLike) -> Dataset:
  """Loads MNIST from the four IDX files in ``data_dir`` (or ``data_dir/mnist``).

  Args:
    data_dir: folder holding the files.

  Returns:
    A ``Dataset``: float32 images in [0, 1] of shape ``(N, 28, 28, 1)``, int32 labels.

  Raises:
    FileNotFoundError: a file is missing (the message names all four).
    ValueError: a file is not a valid IDX file or has unexpected shape.

  Examples:
    >>> ds = load_mnist_local(EMBEDDED_DIR)   # any folder with the four IDX files
    >>> ds.num_train, ds.num_test
    (60000, 10000)
  """
  data_dir = pathlib.Path(data_dir).expanduser()
  paths = _local_paths(data_dir)
  if paths is None:
    raise _missing_error(data_dir)
  arrays = {k: read_idx(p) for k, p in paths.items()}
  for split in ("train", "test"):
    x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
    if x.ndim != 3 or x.shape[1:] != (28, 28) or y.ndim != 1 or len(x) != len(y):
      raise ValueError(f"MNIST {split} files in {data_dir} have unexpected shapes "
                       f"{x.shape} / {y.shape}: expected (N, 28, 28) images and (N,) labels")
    if y.size and (int(y.min()) < 0 or int(y.max()) > 9):
      raise ValueError(f"MNIST {split} labels in {paths[f'y_{split}']} lie outside 0..9 "
                       f"(from {int(y.min())} to {int(y.max())}): the file is damaged or not "
                       "MNIST's labels")
  return Dataset(
      x_train=_to_float(arrays["x_train"][..., None]), y_train=arrays["y_train"].astype(np.int32),
      x_test=_to_float(arrays["x_test"][..., None]), y_test=arrays["y_test"].astype(np.int32),
      num_classes=10, name="mnist")


def _to_float(images: np.ndarray) -> np.ndarray:
  return images.astype(np.float32) / np.float32(255.0)


def download_mnist(dest: str | os.PathLike | None = None,
                   mirrors: tuple[str, ...] = MNIST_MIRRORS, timeout: float = 30.0) -> pathlib.Path:
  """Downloads the four MNIST files into ``dest`` unless they are there, checking each.

  Args:
    dest: target folder; ``None``: ``dfax.data.download.cache_dir("mnist")``.
    mirrors: base URLs tried in order for each file.
    timeout: seconds per connection attempt.

  Returns:
    The folder holding the four verified files.

  Raises:
    dfax.data.download.ChecksumError: a file's content has the wrong sha256
      (it is discarded).
    OSError: no mirror could be reached.

  Examples:
    Needs the network, so it is not run as a doctest:

    >>> folder = download_mnist()   # ~/.cache/dfax/mnist  # doctest: +SKIP
    >>> ds = load_mnist_local(folder)                     # doctest: +SKIP
  """
  folder = pathlib.Path(dest).expanduser() if dest is not None else download.cache_dir("mnist")
  download.fetch_files(MNIST_SHA256, mirrors, folder, timeout)
  return folder


def _from_tfds(data_dir: str | os.PathLike | None, download_ok: bool = True) -> Dataset:
  from dfax.data.tfds_source import load_tfds  # pylint: disable=g-import-not-at-top
  ds = load_tfds("mnist", data_dir=None if data_dir is None else str(data_dir),
                 download=download_ok)
  return Dataset(_to_float(ds.x_train), ds.y_train, _to_float(ds.x_test), ds.y_test,
                 num_classes=10, name="mnist")


def _env_folder() -> pathlib.Path | None:
  """``$DFAX_DATA_DIR/mnist`` when the variable is set; an unusable setting is an error.

  Raises:
    FileNotFoundError: ``DFAX_DATA_DIR`` is set but is not a folder, or has
      no ``mnist/`` holding the four files (a set variable is never ignored).
  """
  env = os.environ.get("DFAX_DATA_DIR")
  if not env:
    return None
  root = pathlib.Path(env).expanduser()
  if not root.is_dir():
    what = "is a file" if root.exists() else "does not exist"
    raise FileNotFoundError(
        f"DFAX_DATA_DIR={env} {what}; set it to a folder holding mnist/ with the four MNIST "
        "files, or unset it to use the copy shipped with dfax.")
  folder = root / "mnist"
  if _local_paths(folder) is None:
    raise FileNotFoundError(
        f"DFAX_DATA_DIR={env} has no mnist/ folder holding the four MNIST files "
        f"({', '.join(MNIST_FILES.values())}); put them in {folder}, or unset DFAX_DATA_DIR "
        "to use the copy shipped with dfax.")
  return folder


def _find_local() -> pathlib.Path | None:
  """$DFAX_DATA_DIR/mnist when the variable is set, else the shipped copy or the cache."""
  env = _env_folder()
  if env is not None:
    return env
  for folder in (EMBEDDED_DIR, download.cache_dir("mnist")):
    if _local_paths(folder) is not None:
      return folder
  return None


def resolve_folder(data_dir: str | os.PathLike | None = None,
                   source: str = "auto") -> pathlib.Path | None:
  """The folder whose IDX files ``load_mnist(data_dir, source)`` reads (None: none local).

  Raises:
    FileNotFoundError: ``DFAX_DATA_DIR`` is set but unusable (see ``load_mnist``).
  """
  if source == "tfds":
    return None
  if source == "download":
    return pathlib.Path(data_dir).expanduser() if data_dir is not None else \
        download.cache_dir("mnist")
  if data_dir is not None:
    return pathlib.Path(data_dir).expanduser()
  return _find_local()


def local_files(folder: str | os.PathLike) -> dict[str, pathlib.Path] | None:
  """``{"x_train": path, ...}``: the four files in ``folder`` (or ``folder/mnist``), or None."""
  return _local_paths(pathlib.Path(folder).expanduser())


def load_mnist(data_dir: str | os.PathLike | None = None, source: str = "auto") -> Dataset:
  """Loads MNIST: 60000 train / 10000 test images of handwritten digits.

  Args:
    data_dir: folder with the IDX files (``source`` "local"/"auto"), the
      download target (``source="download"``), or the tfds data directory
      (``source="tfds"``). ``None``: see below.
    source: "local" reads only local files; "download" fetches the four files
      (unless already there) and checks their sha256; "tfds" reads only
      tensorflow-datasets; "auto" with an explicit ``data_dir`` reads the files
      there (missing ones are an error, not a fallback); "auto" without one
      reads ``$DFAX_DATA_DIR/mnist`` when the variable is set (an unusable
      setting is an error, never skipped), else the copy shipped with dfax,
      else the cache, else downloads into the cache, else tries
      tensorflow-datasets.

  Returns:
    A ``Dataset``: float32 images in [0, 1] of shape ``(N, 28, 28, 1)``,
    int32 labels in 0..9, ``num_classes=10``.

  Raises:
    FileNotFoundError: local files missing (source "local", or "auto" with
      an explicit ``data_dir``), or ``DFAX_DATA_DIR`` set to a missing
      folder, a file, or a folder without ``mnist/`` holding the four files.
    ValueError: a corrupt file, or an unknown ``source``.
    dfax.data.download.ChecksumError: a downloaded file has the wrong content.
    DataUnavailableError: nothing local, no download, and tfds has nothing
      prepared.

  Examples:
    >>> ds = load_mnist()   # the shipped copy, unless $DFAX_DATA_DIR/mnist has one
    >>> ds.x_train.shape, ds.y_train[:3].tolist()
    ((60000, 28, 28, 1), [5, 0, 4])
  """
  if source not in SOURCES:
    raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
  if source == "tfds":
    return _from_tfds(data_dir)
  if source == "download":
    return load_mnist_local(download_mnist(data_dir))
  if data_dir is not None:
    return load_mnist_local(data_dir)
  folder = _find_local()
  if folder is not None:
    return load_mnist_local(folder)
  if source == "local":
    raise _missing_error(default_data_dir())
  try:
    return load_mnist_local(download_mnist())
  except download.ChecksumError:
    raise
  except OSError as download_error:
    from dfax.data.tfds_source import DataUnavailableError  # pylint: disable=g-import-not-at-top
    try:
      return _from_tfds(None, download_ok=False)  # only what a user has prepared
    except (DataUnavailableError, ImportError) as e:
      raise DataUnavailableError(
          f"MNIST: no local copy (DFAX_DATA_DIR, the copy shipped with dfax in {EMBEDDED_DIR}, "
          f"the cache {download.cache_dir('mnist')}), the download failed ({download_error}), "
          f"and tensorflow-datasets has nothing prepared ({e})") from e
