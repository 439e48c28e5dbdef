"""Data sets and batch iterators: numpy on the host, offline-first.

Examples:
  >>> import numpy as np
  >>> from dfax import data
  >>> ds = data.load_mnist()
  >>> batches = data.iterate_batches(ds.x_train, ds.y_train, 128, rng=np.random.default_rng(0))
  >>> xb, yb = next(batches)
  >>> xb.shape, yb.shape
  ((128, 28, 28, 1), (128,))
"""

from dfax.data.augment import augmented_batches
from dfax.data.batching import Dataset, infinite_batches, iterate_batches
from dfax.data.download import ChecksumError, cache_dir
from dfax.data.mnist import MNIST_SHA256, load_mnist
from dfax.data.mnist1d import load_mnist1d
from dfax.data.shakespeare import CharCorpus, corpus_from_text, load_shakespeare, sample_lm_batches
from dfax.data.tfds_source import DataUnavailableError, load_tfds

# The loaders and iterators a user calls; the parts behind them (IDX parsing, downloads,
# vocabularies, the MNIST-1D generator) are in their modules: dfax.data.mnist, .download,
# .shakespeare, .mnist1d, .augment, .batching, .tfds_source.
__all__ = [
    "load_mnist", "load_mnist1d", "load_shakespeare", "load_tfds", "Dataset", "CharCorpus",
    "corpus_from_text", "iterate_batches", "infinite_batches", "augmented_batches",
    "sample_lm_batches", "cache_dir", "MNIST_SHA256", "ChecksumError", "DataUnavailableError",
]
