"""The data sets the trainer knows: one :class:`Dataset` record each, in :data:`DATASETS`.

A record holds the loader, the ``config.dataset`` fields with their defaults
and help, the split that evaluation reads, and an example config; validation,
``default_config``, ``--help`` and docs/config.md read the records.

A loader ``config -> TaskData`` returns a resumable train-batch stream
factory ``train_batches(start_step) -> iterator of (x, y)`` and the
evaluation arrays. A batch is ``(x, y)`` with integer labels ``y``; the loss
is softmax cross-entropy over the logits' last axis, so classifiers (logits
(B, C), labels (B,)) and language models (logits (B, T, V), labels (B, T))
share one trainer. A loader does not change the config it is given.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterator

import numpy as np

from dfax import data as dfax_data
from dfax.data import identity
from dfax.data.cifar10 import load_cifar10
from dfax.data.mnist import SOURCES
from dfax.train.field import Field, with_choices, section


@dataclasses.dataclass(frozen=True)
class TaskData:
  """A dataset as the trainer sees it.

  Attributes:
    train_batches: ``start_step -> iterator of (x, y)``; batch ``k`` depends
      only on the config and ``k``, so a resumed run sees the same batches.
    x_eval, y_eval: the evaluation arrays (after ``dataset.eval_limit``).
    num_classes: the number of logits (the vocabulary size for an LM).
    steps_per_epoch: full batches per pass over the training examples.
    input_shape: one example's shape.
    train_size, eval_size: examples in the full splits, before any limit.
  """

  train_batches: Callable[[int], Iterator[tuple[np.ndarray, np.ndarray]]]
  x_eval: np.ndarray
  y_eval: np.ndarray
  num_classes: int
  steps_per_epoch: int
  input_shape: tuple[int, ...]
  train_size: int = 0
  eval_size: int = 0


@dataclasses.dataclass(frozen=True)
class Dataset:
  """A data set the trainer can load (``config.dataset.name``).

  Attributes:
    name: the value of ``config.dataset.name``.
    load: ``config -> TaskData``.
    fields: the ``config.dataset`` fields besides ``name``, with defaults.
    eval_split: the split evaluation reads, as metrics name it: ``"test"``
      or ``"val"``.
    example_config: a file in ``configs/`` written for this data set.
    help: one line for ``--help`` and the docs.
    identify: ``config -> dict`` saying where the files were read from and
      their content fingerprint (``dfax.data.identity``), for the workdir's
      data.json; ``None``: the trainer fingerprints the evaluation arrays.
  """

  name: str
  load: Callable[[Any], TaskData]
  fields: tuple[Field, ...]
  eval_split: str
  example_config: str
  help: str
  identify: Callable[[Any], dict | None] | None = None

  def section(self, **changes: Any):
    """A ``config.dataset`` section: the defaults, with ``changes`` applied."""
    return section(self.name, self.fields, changes, "dataset")


def _classification(ds: dfax_data.Dataset, config) -> TaskData:
  limit, eval_limit = config.dataset.train_limit, config.dataset.eval_limit
  x, y = (ds.x_train[:limit], ds.y_train[:limit]) if limit else (ds.x_train, ds.y_train)
  xe, ye = (ds.x_test[:eval_limit], ds.y_test[:eval_limit]) if eval_limit else (ds.x_test,
                                                                                ds.y_test)
  batch, seed, shift = config.batch_size, config.seed, config.dataset.augment_shift

  def train_batches(start_step: int):
    stream = dfax_data.infinite_batches(x, y, batch, seed, start_step=start_step)
    if not shift:
      return stream
    return dfax_data.augmented_batches(stream, shift, seed, start_step=start_step)

  return TaskData(train_batches, xe, ye, ds.num_classes, len(x) // batch, tuple(x.shape[1:]),
                  train_size=len(ds.x_train), eval_size=len(ds.x_test))


def mnist(config) -> TaskData:
  return _classification(
      dfax_data.load_mnist(config.data_dir or None, source=config.dataset.source), config)


def cifar10(config) -> TaskData:
  """CIFAR-10 through tensorflow-datasets; ``config.data_dir`` is the tfds data_dir."""
  if config.dataset.source not in ("auto", "tfds"):
    raise ValueError(f"dfax.train: dataset cifar10 is read through tensorflow-datasets only; "
                     f"set --config.dataset.source=tfds (got {config.dataset.source!r}).")
  return _classification(load_cifar10(config.data_dir or None), config)


def mnist1d(config) -> TaskData:
  return _classification(dfax_data.load_mnist1d(), config)


def shakespeare(config) -> TaskData:
  """Character-level LM: batch ``step`` is drawn with seed (seed, step): resumable."""
  corpus = dfax_data.load_shakespeare()
  batch, seq, seed = config.batch_size, config.dataset.seq_len, config.seed

  def train_batches(start_step: int):
    step = start_step
    while True:
      rng = np.random.default_rng([seed, step])
      yield next(dfax_data.sample_lm_batches(corpus.train_tokens, batch, seq, rng))
      step += 1

  rng = np.random.default_rng([seed, 10**9])
  val = dfax_data.sample_lm_batches(corpus.val_tokens, config.dataset.eval_windows, seq, rng)
  x_eval, y_eval = next(val)
  windows = len(corpus.train_tokens) // seq
  steps_per_epoch = max(1, windows // batch)
  return TaskData(train_batches, x_eval, y_eval, corpus.vocab_size, steps_per_epoch, (seq,),
                  train_size=windows, eval_size=len(x_eval))


_SOURCE = with_choices(SOURCES, "where the data comes from (dfax.data.load_mnist)")
IMAGE_FIELDS = (
    Field("source", "auto", _SOURCE, choices=SOURCES),
    Field("train_limit", 0, "use only the first N training examples; 0: all"),
    Field("eval_limit", 0, "evaluate on only the first N test examples; 0: all"),
    Field("augment_shift", 0, "random translation of training images, in pixels"),
)

DATASETS: dict[str, Dataset] = {d.name: d for d in (
    Dataset("mnist", mnist, IMAGE_FIELDS, "test", "mnist_mlp.py",
            "MNIST digits, 60k train / 10k test (IDX files)",
            lambda c: identity.mnist(c.data_dir or None, c.dataset.source)),
    Dataset("mnist1d", mnist1d, IMAGE_FIELDS[1:], "test", "mnist1d_mlp.py",
            "MNIST-1D, 4k train / 1k test, generated (Greydanus 2020)"),
    Dataset("cifar10", cifar10, IMAGE_FIELDS, "test", "cifar10_cnn.py",
            "CIFAR-10 through tensorflow-datasets",
            lambda c: identity.tfds("cifar10", c.data_dir or None)),
    Dataset("shakespeare", shakespeare, (
        Field("seq_len", 128, "tokens (characters) per training window"),
        Field("eval_windows", 256, "validation windows drawn once per run"),
    ), "val", "shakespeare_lm.py", "42 Shakespeare works, characters (shipped); a held-out val split",
            lambda c: identity.shakespeare()),
)}


def get(name: str) -> Dataset:
  """The record named ``name``; ``KeyError`` naming the known ones otherwise."""
  try:
    return DATASETS[name]
  except KeyError:
    raise KeyError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}") from None
