"""Character-level Shakespeare: the shipped corpus, where it is read from, batches."""

import fnmatch
import gzip
import hashlib
import pathlib
import tomllib

import numpy as np
import pytest

from dfax.data import corpus_from_text, load_shakespeare, sample_lm_batches
from dfax.data.shakespeare import build_vocab, decode, encode
from dfax.data import shakespeare

REPO = pathlib.Path(__file__).resolve().parents[2]
SHARED_COPY = REPO.parent / "shared" / "data" / "shakespeare" / shakespeare.FILENAME
NUM_CHARS = 5057282


@pytest.fixture(scope="module")
def corpus(shakespeare_file):
  return load_shakespeare(shakespeare_file)


def test_corpus_sizes(corpus):
  assert corpus.vocab_size == 84 and corpus.vocab == "".join(sorted(corpus.vocab))
  n = len(corpus.train_tokens) + len(corpus.val_tokens)
  assert n == 5057282 and len(corpus.val_tokens) == round(0.1 * n)
  assert corpus.train_tokens.dtype == np.int32 and corpus.train_tokens.max() < 84


def test_roundtrip(corpus):
  text = "To be, or not to be, that is the question:\n"
  assert corpus.decode(corpus.encode(text)) == text
  assert corpus.decode(corpus.train_tokens[:25]) == "ALL'S WELL THAT ENDS WELL"


def test_encode_unknown_character():
  with pytest.raises(ValueError, match="not in the vocabulary"):
    encode("hé", build_vocab("hello"))
  assert decode(encode("hole", "ehlo"), "ehlo") == "hole"
  assert encode("hole", "ehlo").tolist() == [1, 3, 2, 0]


def test_shipped_copy_without_data_dir(monkeypatch):
  monkeypatch.delenv("DFAX_DATA_DIR", raising=False)
  assert shakespeare.default_path() == shakespeare.EMBEDDED_DIR / shakespeare.FILENAME
  corpus = load_shakespeare(val_fraction=0.0)
  assert len(corpus.val_tokens) == 0 and len(corpus.train_tokens) == NUM_CHARS
  text = corpus.decode(corpus.train_tokens)
  assert hashlib.sha256(text.encode("utf-8")).hexdigest() == shakespeare.SHAKESPEARE_SHA256
  assert text.count("\nby William Shakespeare\n") == 42


@pytest.mark.skipif(not SHARED_COPY.is_file(), reason=f"no reference copy at {SHARED_COPY}")
def test_shipped_copy_equals_the_shared_one():
  shipped = shakespeare.EMBEDDED_DIR / shakespeare.FILENAME
  digests = []
  for path in (shipped, SHARED_COPY):
    with gzip.open(path, "rb") as f:
      digests.append(hashlib.sha256(f.read()).hexdigest())
  assert digests[0] == digests[1] == shakespeare.SHAKESPEARE_SHA256


def test_shipped_files_are_package_data():
  patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
      "package-data"]["dfax.data"]
  shipped = sorted(shakespeare.EMBEDDED_DIR.iterdir())
  assert {p.name for p in shipped} >= {shakespeare.FILENAME, "README.md", "SOURCES.txt"}
  for path in shipped:
    relative = f"{shakespeare.EMBEDDED_DIR.name}/{path.name}"
    assert any(fnmatch.fnmatch(relative, pattern) for pattern in patterns), relative


def test_data_dir_takes_precedence(tmp_path, monkeypatch):
  folder = tmp_path / "shakespeare"
  folder.mkdir()
  with gzip.open(folder / shakespeare.FILENAME, "wb") as f:
    f.write(b"abcabcabca")
  monkeypatch.setenv("DFAX_DATA_DIR", str(tmp_path))
  assert shakespeare.default_path() == folder / shakespeare.FILENAME
  local = load_shakespeare(val_fraction=0.2)
  assert local.vocab == "abc" and len(local.train_tokens) == 8
  monkeypatch.setenv("DFAX_DATA_DIR", str(tmp_path / "elsewhere"))  # no shakespeare/ there
  assert shakespeare.default_path() == shakespeare.EMBEDDED_DIR / shakespeare.FILENAME


def test_explicit_paths(shakespeare_file, tmp_path):
  folder = load_shakespeare(shakespeare_file.parent, val_fraction=0.5)  # a folder
  assert len(folder.val_tokens) == NUM_CHARS // 2
  plain = tmp_path / "tiny.txt"  # a plain (not gzipped) file
  plain.write_text("To be, or not to be", encoding="utf-8")
  tiny = load_shakespeare(plain, val_fraction=0.0)
  assert tiny.decode(tiny.train_tokens) == "To be, or not to be"
def test_split():
  small = corpus_from_text("abcabcabca", val_fraction=0.2)
  assert small.vocab == "abc" and len(small.train_tokens) == 8 and len(small.val_tokens) == 2
  with pytest.raises(ValueError, match="val_fraction"):
    corpus_from_text("abc", val_fraction=1.0)


def test_missing_file(tmp_path):
  with pytest.raises(FileNotFoundError, match="shakespeare_works.txt.gz"):
    load_shakespeare(tmp_path)


def test_lm_batches_shift_by_one(corpus):
  batches = sample_lm_batches(corpus.train_tokens, batch_size=8, seq_len=64, rng=0)
  for _ in range(3):
    inputs, targets = next(batches)
    assert inputs.shape == targets.shape == (8, 64) and inputs.dtype == np.int32
    np.testing.assert_array_equal(inputs[:, 1:], targets[:, :-1])
  again = next(sample_lm_batches(corpus.train_tokens, 8, 64, rng=np.random.default_rng(0)))
  first = next(sample_lm_batches(corpus.train_tokens, 8, 64, rng=0))
  np.testing.assert_array_equal(again[0], first[0])


def test_lm_batches_reach_the_last_token():
  tokens = np.arange(5, dtype=np.int32)
  inputs, targets = next(sample_lm_batches(tokens, batch_size=50, seq_len=4, rng=0))
  np.testing.assert_array_equal(inputs, np.tile([0, 1, 2, 3], (50, 1)))
  np.testing.assert_array_equal(targets, np.tile([1, 2, 3, 4], (50, 1)))
  with pytest.raises(ValueError, match="longer than seq_len"):
    next(sample_lm_batches(tokens, 2, 5, rng=0))
