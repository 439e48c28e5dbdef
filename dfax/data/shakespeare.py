"""Character-level Shakespeare for small language models.

The corpus is 42 works of Shakespeare (Project Gutenberg, public domain),
~5 M characters, one gzipped text file (about 2 MB) shipped inside the package
(``dfax/data/shakespeare_text``). Tokens are characters; the vocabulary is the
sorted set of characters of the whole text.

``load_shakespeare()`` with no path reads, in order:
``$DFAX_DATA_DIR/shakespeare/shakespeare_works.txt.gz`` when that file exists,
else the copy shipped with dfax.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import pathlib
from collections.abc import Iterator

import numpy as np

from dfax.data.mnist import default_data_dir

FILENAME = "shakespeare_works.txt.gz"

EMBEDDED_DIR = pathlib.Path(__file__).resolve().parent / "shakespeare_text"
"""The copy of the corpus shipped inside the package."""

SHAKESPEARE_SHA256 = "3237e33221e73615c677bd59fd69a76da38f9a2eb51d6efb7191f32f8cb9fa4c"
"""sha256 of the shipped file's uncompressed content (UTF-8, 5057282 characters)."""


def _codepoints(text: str) -> np.ndarray:
  return np.frombuffer(text.encode("utf-32-le"), dtype="<u4")


def build_vocab(text: str) -> str:
  """The sorted unique characters of ``text``.

  Examples:
    >>> build_vocab("hello")
    'ehlo'
  """
  return "".join(sorted(set(text)))


def encode(text: str, vocab: str) -> np.ndarray:
  """Maps each character of ``text`` to its index in ``vocab``.

  Args:
    text: the string to encode.
    vocab: sorted unique characters (from ``build_vocab``).

  Returns:
    int32 array of token ids, one per character.

  Raises:
    ValueError: ``text`` holds characters outside ``vocab``.

  Examples:
    >>> encode("hole", "ehlo")
    array([1, 3, 2, 0], dtype=int32)
  """
  table = _codepoints(vocab)
  if len(table) == 0 or np.any(table[1:] <= table[:-1]):
    raise ValueError("vocab must be non-empty, sorted and without repeats (use build_vocab)")
  points = _codepoints(text)
  ids = np.minimum(np.searchsorted(table, points), len(table) - 1)
  bad = table[ids] != points
  if np.any(bad):
    unknown = "".join(sorted({chr(c) for c in points[bad]}))
    raise ValueError(f"characters not in the vocabulary: {unknown!r}")
  return ids.astype(np.int32)


def decode(tokens: np.ndarray, vocab: str) -> str:
  """Maps token ids back to a string: the inverse of ``encode``.

  Examples:
    >>> decode(encode("hole", "ehlo"), "ehlo")
    'hole'
  """
  points = _codepoints(vocab)[np.asarray(tokens, np.int64)]
  return points.astype("<u4").tobytes().decode("utf-32-le")


@dataclasses.dataclass(frozen=True, eq=False)
class CharCorpus:
  """A character-level corpus split into train and validation tokens.

  Attributes:
    train_tokens: int32 token ids, the first part of the text.
    val_tokens: int32 token ids, the last ``val_fraction`` of the text.
    vocab: the sorted unique characters; token ``i`` is ``vocab[i]``.

  Examples:
    >>> corpus = corpus_from_text("To be, or not to be")
    >>> corpus.decode(corpus.encode("To be"))
    'To be'
  """

  train_tokens: np.ndarray
  val_tokens: np.ndarray
  vocab: str
  name: str = "shakespeare"

  @property
  def vocab_size(self) -> int:
    return len(self.vocab)

  def encode(self, text: str) -> np.ndarray:
    return encode(text, self.vocab)

  def decode(self, tokens: np.ndarray) -> str:
    return decode(tokens, self.vocab)


def default_path() -> pathlib.Path:
  """The corpus file ``load_shakespeare()`` reads when given no path.

  Returns:
    ``$DFAX_DATA_DIR/shakespeare/shakespeare_works.txt.gz`` when the variable
    is set and that file exists, else the copy shipped with dfax
    (``EMBEDDED_DIR / FILENAME``).

  Examples:
    >>> default_path().name
    'shakespeare_works.txt.gz'
  """
  folder = default_data_dir("shakespeare")
  if folder is not None and (folder / FILENAME).is_file():
    return folder / FILENAME
  return EMBEDDED_DIR / FILENAME


def read_text(path: str | os.PathLike) -> str:
  """Reads a UTF-8 text file, gunzipping it when its name ends in ``.gz``."""
  path = pathlib.Path(path).expanduser()
  opener = gzip.open if path.suffix == ".gz" else open
  with opener(path, "rb") as f:
    return f.read().decode("utf-8")


def corpus_from_text(text: str, val_fraction: float = 0.1, name: str = "text") -> CharCorpus:
  """Builds a ``CharCorpus``; the last ``val_fraction`` of ``text`` is validation.

  Examples:
    >>> corpus = corpus_from_text("abcabcabca", val_fraction=0.2)
    >>> corpus.vocab, len(corpus.train_tokens), len(corpus.val_tokens)
    ('abc', 8, 2)
  """
  if not 0.0 <= val_fraction < 1.0:
    raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
  vocab = build_vocab(text)
  tokens = encode(text, vocab)
  split = len(tokens) - round(len(tokens) * val_fraction)
  return CharCorpus(tokens[:split], tokens[split:], vocab, name)


def load_shakespeare(path: str | os.PathLike | None = None,
                     val_fraction: float = 0.1) -> CharCorpus:
  """Loads the Shakespeare corpus as character tokens.

  Args:
    path: the text file (gzipped or plain) or a folder holding
      ``shakespeare_works.txt.gz``; ``None``: ``default_path()``, that is
      ``$DFAX_DATA_DIR/shakespeare/`` when it holds the file, else the copy
      shipped with dfax.
    val_fraction: fraction of the text, taken from its end, for validation.

  Returns:
    A ``CharCorpus`` (84 characters in the vocabulary for the shipped file).

  Raises:
    FileNotFoundError: no corpus file at ``path`` (or, with no path, the
      shipped copy is missing from the installation).

  Examples:
    >>> corpus = load_shakespeare()
    >>> corpus.vocab_size, len(corpus.train_tokens)
    (84, 4551554)
  """
  if path is None:
    resolved = default_path()
    if not resolved.is_file():
      raise FileNotFoundError(
          f"the Shakespeare corpus shipped with dfax is missing ({resolved}): reinstall "
          "dfax-flax with its package data, pass path=..., or set DFAX_DATA_DIR to a folder "
          f"with shakespeare/{FILENAME}.")
  else:
    resolved = pathlib.Path(path).expanduser()
    if resolved.is_dir():
      resolved = resolved / FILENAME
    if not resolved.is_file():
      raise FileNotFoundError(
          f"Shakespeare text not found at {resolved}. Expected {FILENAME}: pass the file or "
          "its folder as path=..., or path=None for the copy shipped with dfax.")
  return corpus_from_text(read_text(resolved), val_fraction, name="shakespeare")


def sample_lm_batches(
    tokens: np.ndarray,
    batch_size: int,
    seq_len: int,
    rng: np.random.Generator | int,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """Endless random windows for next-character prediction.

  Each row is a window ``tokens[s : s + seq_len + 1]`` at a uniformly random
  start ``s``; inputs are its first ``seq_len`` tokens, targets its last
  ``seq_len`` (the inputs shifted by one).

  Args:
    tokens: 1-D int token ids, longer than ``seq_len``.
    batch_size: rows per batch.
    seq_len: tokens per row.
    rng: numpy generator or an int seed.

  Returns:
    An infinite iterator of int32 ``(inputs, targets)``, each ``(batch_size, seq_len)``.

  Examples:
    >>> corpus = corpus_from_text("To be, or not to be, that is the question")
    >>> inputs, targets = next(sample_lm_batches(corpus.train_tokens, 4, 8, rng=0))
    >>> inputs.shape, bool((inputs[:, 1:] == targets[:, :-1]).all())
    ((4, 8), True)
  """
  tokens = np.asarray(tokens)
  if tokens.ndim != 1 or len(tokens) <= seq_len:
    raise ValueError(f"need 1-D tokens longer than seq_len={seq_len}, got shape {tokens.shape}")
  if batch_size <= 0 or seq_len <= 0:
    raise ValueError(f"batch_size and seq_len must be positive, got {batch_size}, {seq_len}")
  rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
  offsets = np.arange(seq_len + 1)
  while True:
    starts = rng.integers(0, len(tokens) - seq_len, size=batch_size)
    windows = tokens[starts[:, None] + offsets].astype(np.int32)
    yield windows[:, :-1], windows[:, 1:]
