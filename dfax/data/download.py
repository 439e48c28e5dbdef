"""Downloading data files into a user cache, each checked against its sha256.

A file is named, fetched from the first base URL that serves it, written to a
temporary name, checked and only then renamed into place: a partial or corrupt
download never sits where a loader would read it. The checksum is taken over
the file's *uncompressed* bytes when its name ends in ``.gz``, so a mirror that
re-compresses the same content still passes.

The cache is ``$DFAX_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/dfax``, else
``~/.cache/dfax``.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pathlib
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence

_CHUNK = 1 << 20


class ChecksumError(ValueError):
  """A downloaded file's content does not match its expected sha256."""


def cache_dir(name: str = "") -> pathlib.Path:
  """The folder where dfax caches downloads (not created here).

  Args:
    name: optional subfolder, e.g. ``"mnist"``.

  Returns:
    ``$DFAX_CACHE_DIR/<name>``, else ``$XDG_CACHE_HOME/dfax/<name>``, else
    ``~/.cache/dfax/<name>``.

  Examples:
    >>> cache_dir("mnist").name
    'mnist'
  """
  root = os.environ.get("DFAX_CACHE_DIR")
  if root:
    base = pathlib.Path(root).expanduser()
  else:
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = (pathlib.Path(xdg).expanduser() if xdg else pathlib.Path.home() / ".cache") / "dfax"
  return base / name if name else base


def content_sha256(path: str | os.PathLike, gzipped: bool | None = None) -> str:
  """The sha256 hex digest of a file's content, gunzipped first if it is gzip.

  Args:
    path: the file.
    gzipped: whether to gunzip; ``None``: when its name ends in ``.gz``.

  Returns:
    The 64-character hex digest.

  Raises:
    ValueError: a ``.gz`` file that is not valid gzip.
  """
  path = pathlib.Path(path)
  digest = hashlib.sha256()
  if gzipped is None:
    gzipped = path.name.endswith(".gz")
  opener = gzip.open if gzipped else open
  try:
    with opener(path, "rb") as f:
      while chunk := f.read(_CHUNK):
        digest.update(chunk)
  except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
    raise ValueError(f"{path}: cannot read ({e})") from e
  return digest.hexdigest()


def _fetch(url: str, target: pathlib.Path, timeout: float) -> None:
  with urllib.request.urlopen(url, timeout=timeout) as response, open(target, "wb") as out:
    while chunk := response.read(_CHUNK):
      out.write(chunk)


def fetch_file(filename: str, sha256: str, base_urls: Sequence[str], dest: str | os.PathLike,
               timeout: float = 30.0) -> pathlib.Path:
  """Puts ``dest/filename`` in place, downloading it if missing, and checks it.

  Args:
    filename: the file's name, appended to each base URL.
    sha256: expected hex digest of its (uncompressed, for ``.gz``) content.
    base_urls: mirrors tried in order, e.g. ``["https://host/mnist/"]``.
    dest: folder to write into (created if needed).
    timeout: seconds per connection attempt.

  Returns:
    The path of the verified file.

  Raises:
    ChecksumError: a mirror served content with another checksum (nothing is
      kept; the next mirror is not tried, since a wrong file is not a network
      failure).
    OSError: no mirror could be reached or served the file (the message lists
      the URLs and their errors).
  """
  dest = pathlib.Path(dest).expanduser()
  target = dest / filename
  if target.is_file() and content_sha256(target) == sha256:
    return target
  dest.mkdir(parents=True, exist_ok=True)
  partial = dest / (filename + ".part")
  failures = []
  for base in base_urls:
    url = base.rstrip("/") + "/" + filename
    try:
      _fetch(url, partial, timeout)
    except (urllib.error.URLError, OSError) as e:
      failures.append(f"{url}: {e}")
      partial.unlink(missing_ok=True)
      continue
    try:
      got = content_sha256(partial, gzipped=filename.endswith(".gz"))
    except ValueError as e:
      partial.unlink(missing_ok=True)
      raise ChecksumError(f"{url}: the download is not a valid file ({e}); nothing was kept") from e
    if got != sha256:
      partial.unlink(missing_ok=True)
      raise ChecksumError(f"{url}: sha256 of the content is {got}, expected {sha256}; the "
                          "download was discarded. Retry later, or pass another mirror.")
    os.replace(partial, target)
    return target
  raise OSError(f"could not download {filename}: " + "; ".join(failures or ["no URLs given"]))


def fetch_files(files: Mapping[str, str], base_urls: Sequence[str], dest: str | os.PathLike,
                timeout: float = 30.0) -> dict[str, pathlib.Path]:
  """``fetch_file`` for each ``filename -> sha256`` of ``files``.

  Args:
    files: file names and the sha256 of their content.
    base_urls: mirrors tried in order for each file.
    dest: folder to write into.
    timeout: seconds per connection attempt.

  Returns:
    ``filename -> path`` of the verified files.

  Raises:
    ChecksumError, OSError: as ``fetch_file``.
  """
  return {name: fetch_file(name, digest, base_urls, dest, timeout) for name, digest in files.items()}
