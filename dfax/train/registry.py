"""A run's model and data, built from its config through the records.

``config.model.name`` names a :class:`dfax.train.families.ModelFamily` and
``config.dataset.name`` a :class:`dfax.train.datasets.Dataset`; extend the
trainer by adding a record to ``families.FAMILIES`` or ``datasets.DATASETS``.
"""

from __future__ import annotations

from typing import Any

from dfax.train import datasets, families
from dfax.train.datasets import TaskData


def _check_names(config) -> None:
  for kind, table, name in (("model", families.FAMILIES, config.model.name),
                            ("dataset", datasets.DATASETS, config.dataset.name)):
    if name not in table:
      raise ValueError(f"dfax.train: unknown {kind} {name!r}; known: {sorted(table)}. "
                       f"Set --config.{kind}.name to one of them, or add a record to "
                       f"dfax/train/{'families' if kind == 'model' else 'datasets'}.py.")


def load_task(config) -> TaskData:
  """The task data of ``config.dataset.name``'s record.

  Raises:
    ValueError: for a model or data set name no record has, naming the known ones.
  """
  _check_names(config)
  return datasets.DATASETS[config.dataset.name].load(config)


def build_model(config, num_classes: int) -> Any:
  """The model of ``config.model.name``'s record, with ``num_classes`` outputs."""
  _check_names(config)
  return families.FAMILIES[config.model.name].build(config, num_classes)


def build(config) -> tuple[Any, TaskData]:
  """Builds (model, task data) from ``config.model.name`` and ``config.dataset.name``.

  The model's output size comes from the data (``task.num_classes``);
  ``config`` is not changed.

  Raises:
    ValueError: for a name no record has, naming the known ones.
  """
  task = load_task(config)
  return build_model(config, task.num_classes), task
