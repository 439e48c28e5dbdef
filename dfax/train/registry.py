"""Names in configs -> model and dataset builders. Extend by adding entries.

Builder signatures:
  MODELS[name](config, num_classes) -> flax.linen.Module; ``config.model``
    holds exactly the fields in ``MODEL_FIELDS[name]`` (plus ``name``).
  DATASETS[name](config) -> ``TaskData``: a resumable train-batch stream
    factory ``train_batches(start_step) -> iterator of (x, y)`` and the
    evaluation arrays. A batch is ``(x, y)`` with integer labels ``y``; the
    loss is softmax cross-entropy over the logits' last axis, so classifiers
    (logits (B, C), labels (B,)) and language models (logits (B, T, V),
    labels (B, T)) share one trainer.

Neither builder changes the config it is given.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterator

import numpy as np

from dfax import data as dfax_data
from dfax import models
from dfax.data.cifar10 import load_cifar10


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


def mlp(config, num_classes: int) -> Any:
  return models.MLP(features=tuple(config.model.features), num_classes=num_classes,
                    activation=config.model.activation)


def cnn(config, num_classes: int) -> Any:
  m = config.model
  if isinstance(m.kernel_size, bool) or not isinstance(m.kernel_size, int) or m.kernel_size < 1:
    raise ValueError(f"dfax.train: config.model.kernel_size={m.kernel_size!r} must be an integer "
                     ">= 1 (the side of the square conv window), e.g. --config.model.kernel_size=3.")
  return models.CNN(num_classes=num_classes, features=tuple(m.features), dense=tuple(m.dense),
                    activation=m.activation, kernel_size=(m.kernel_size, m.kernel_size),
                    pool=m.pool)


def transformer_lm(config, num_classes: int) -> Any:
  m = config.model
  return models.TransformerLM(models.TransformerConfig(
      vocab_size=num_classes, d_model=m.d_model, num_heads=m.num_heads,
      num_layers=m.num_layers, d_ff=m.d_ff, max_len=config.dataset.seq_len, remat=m.remat,
      error_at=m.error_at, norm=m.norm))


def vit(config, num_classes: int) -> Any:
  m = config.model
  return models.ViT(models.ViTConfig(num_classes=num_classes, patch=m.patch,
                                     d_model=m.d_model, num_heads=m.num_heads,
                                     num_layers=m.num_layers, d_ff=m.d_ff, remat=m.remat,
                                     norm=m.norm, pre_logits=m.pre_logits))


def stacked_mlp(config, num_classes: int) -> Any:
  from dfax.parallel import stack  # noqa: PLC0415

  m = config.model
  return stack.StackedMLP(stack.StackConfig(
      d=m.d, d_ff=m.d_ff, n_out=num_classes, num_stages=m.num_stages,
      blocks_per_stage=m.blocks_per_stage, cut=m.cut))


MODELS: dict[str, Callable[[Any, int], Any]] = {"mlp": mlp, "cnn": cnn,
                                                "transformer_lm": transformer_lm, "vit": vit,
                                                "stacked_mlp": stacked_mlp}
MODEL_FIELDS: dict[str, tuple[str, ...]] = {
    "mlp": ("features", "activation"),
    "cnn": ("features", "dense", "activation", "kernel_size", "pool"),
    "transformer_lm": ("d_model", "num_heads", "num_layers", "d_ff", "remat", "error_at", "norm"),
    "vit": ("patch", "d_model", "num_heads", "num_layers", "d_ff", "remat", "norm",
            "pre_logits"),
    "stacked_mlp": ("d", "d_ff", "num_stages", "blocks_per_stage", "cut"),
}
MODEL_CONFIGS = {"mlp": "mnist_mlp.py", "cnn": "mnist_cnn.py",  # cifar10_cnn.py for CIFAR-10
                 "transformer_lm": "shakespeare_lm.py", "vit": "vit_mnist.py",
                 "stacked_mlp": "mnist_pipeline.py"}
DATASETS: dict[str, Callable[[Any], TaskData]] = {"mnist": mnist, "mnist1d": mnist1d,
                                                  "cifar10": cifar10,
                                                  "shakespeare": shakespeare}
_IMAGES = ("source", "train_limit", "eval_limit", "augment_shift")
DATASET_FIELDS: dict[str, tuple[str, ...]] = {
    "mnist": _IMAGES, "mnist1d": _IMAGES, "cifar10": _IMAGES,
    "shakespeare": ("source", "seq_len", "eval_windows", "train_limit", "eval_limit"),
}
UNUSED_FIELDS = {"shakespeare": ("train_limit", "eval_limit")}  # must stay 0


def build(config) -> tuple[Any, TaskData]:
  """Builds (model, task data) from ``config.model.name`` and ``config.dataset.name``.

  The model's output size comes from the data (``task.num_classes``);
  ``config`` is not changed.
  """
  for kind, table, name in (("model", MODELS, config.model.name),
                            ("dataset", DATASETS, config.dataset.name)):
    if name not in table:
      raise ValueError(f"dfax.train: unknown {kind} {name!r}; known: {sorted(table)}. "
                       f"Set --config.{kind}.name to one of them, or add a builder to "
                       f"dfax/train/registry.py.")
  task = DATASETS[config.dataset.name](config)
  return MODELS[config.model.name](config, task.num_classes), task
