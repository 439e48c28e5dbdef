"""Loading a config file outside the CLI (tests, notebooks, scripts)."""

from __future__ import annotations

import importlib.util
import os

import ml_collections


def load_config(path: str | os.PathLike, **overrides) -> ml_collections.ConfigDict:
  """Runs ``get_config()`` of a config file and applies dotted overrides.

  Example::

    config = load_config("configs/smoke.py", method="bp", **{"dataset.train_limit": 512})
  """
  spec = importlib.util.spec_from_file_location(f"dfax_config_{abs(hash(str(path)))}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  for dotted, value in overrides.items():
    *parents, leaf = dotted.split(".")
    node = config
    for name in parents:
      node = node[name]
    node[leaf] = value
  return config
