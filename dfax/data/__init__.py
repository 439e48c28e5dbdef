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

from dfax.data.augment import augmented_batches, random_translate
from dfax.data.batching import (Dataset, epoch_permutation, infinite_batches, iterate_batches,
                                num_batches)
from dfax.data.download import ChecksumError, cache_dir, fetch_files
from dfax.data.mnist import (EMBEDDED_DIR, MNIST_FILES, MNIST_SHA256, default_data_dir,
                             download_mnist, load_mnist, load_mnist_local, parse_idx, read_idx)
from dfax.data.mnist1d import generate_mnist1d, load_mnist1d
from dfax.data.shakespeare import (CharCorpus, build_vocab, corpus_from_text, decode, encode,
                                   load_shakespeare, sample_lm_batches)
from dfax.data.tfds_source import DataUnavailableError, has_network, load_tfds

__all__ = [
    "Dataset", "iterate_batches", "infinite_batches", "epoch_permutation", "num_batches",
    "load_mnist", "load_mnist_local", "parse_idx", "read_idx", "MNIST_FILES", "default_data_dir",
    "download_mnist", "EMBEDDED_DIR", "MNIST_SHA256", "cache_dir", "fetch_files", "ChecksumError",
    "load_mnist1d", "generate_mnist1d",
    "CharCorpus", "load_shakespeare", "sample_lm_batches", "build_vocab", "encode", "decode",
    "corpus_from_text",
    "load_tfds", "has_network", "DataUnavailableError",
    "random_translate", "augmented_batches",
]
