"""Character-level Shakespeare."""

import numpy as np
import pytest

from dfax.data import (
  build_vocab,
  corpus_from_text,
  decode,
  encode,
  load_shakespeare,
  sample_lm_batches,
)


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


def test_directory_path(shared_data, shakespeare_file, monkeypatch):
  monkeypatch.setenv("DFAX_DATA_DIR", str(shared_data))
  default = load_shakespeare(val_fraction=0.0)  # $DFAX_DATA_DIR/shakespeare/<file>
  assert len(default.val_tokens) == 0 and len(default.train_tokens) == 5057282
  folder = load_shakespeare(shared_data / "shakespeare", val_fraction=0.5)
  assert len(folder.val_tokens) == 5057282 // 2


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
