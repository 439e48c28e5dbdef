"""What every config starts from: the trainer's defaults and the sections of the records.

``base_config()`` is ``dfax.train.config_schema.default_config()``;
``model(name, **changes)`` and ``dataset(name, **changes)`` give a
``config.model`` / ``config.dataset`` section holding that family's or data
set's defaults with ``changes`` applied, so a config file assigns only what
differs from the defaults.
"""

from dfax.train import datasets, families
from dfax.train.config_schema import default_config as base_config  # noqa: F401


def model(name: str, **changes):
  """``config.model`` for model family ``name`` (``dfax.train.families``)."""
  return families.get(name).section(**changes)


def dataset(name: str, **changes):
  """``config.dataset`` for data set ``name`` (``dfax.train.datasets``)."""
  return datasets.get(name).section(**changes)
