"""A run's model and data, built from its config through the records.

``config.model.name`` names a :class:`dfax.train.families.ModelFamily` and
``config.dataset.name`` a :class:`dfax.train.datasets.Dataset`; extend the
trainer by adding a record to ``families.FAMILIES`` or ``datasets.DATASETS``.
"""

from __future__ import annotations

from typing import Any

from dfax.train import datasets, families
from dfax.train.datasets import TaskData


def build(config) -> tuple[Any, TaskData]:
  """Builds (model, task data) from ``config.model.name`` and ``config.dataset.name``.

  The model's output size comes from the data (``task.num_classes``);
  ``config`` is not changed.

  Raises:
    ValueError: for a name no record has, naming the known ones.
  """
  for kind, table, name in (("model", families.FAMILIES, config.model.name),
                            ("dataset", datasets.DATASETS, config.dataset.name)):
    if name not in table:
      raise ValueError(f"dfax.train: unknown {kind} {name!r}; known: {sorted(table)}. "
                       f"Set --config.{kind}.name to one of them, or add a record to "
                       f"dfax/train/{'families' if kind == 'model' else 'datasets'}.py.")
  task = datasets.DATASETS[config.dataset.name].load(config)
  return families.FAMILIES[config.model.name].build(config, task.num_classes), task
