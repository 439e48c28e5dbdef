"""Loading a config file outside the CLI (tests, notebooks, scripts)."""

from __future__ import annotations

import importlib.util
import os

import ml_collections

from dfax.train.errors import ConfigError


def load_config(path: str | os.PathLike, **overrides) -> ml_collections.ConfigDict:
  """Runs ``get_config()`` of a config file and applies dotted overrides.

  Args:
    path: a Python file defining ``get_config()`` (see configs/).
    **overrides: ``{"dotted.key": value}``; each key must exist in the config.

  Returns:
    The config.

  Raises:
    ConfigError: naming the path when the file is missing or has no
      ``get_config``, or the key when an override names no field.

  Example::

    config = load_config("configs/smoke.py", method="bp", **{"dataset.train_limit": 512})
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise ConfigError(f"dfax.train: config file {path!r} does not exist; give the path of a "
                      "file such as configs/smoke.py.")
  spec = importlib.util.spec_from_file_location(f"dfax_config_{abs(hash(path))}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not callable(getattr(module, "get_config", None)):
    raise ConfigError(f"dfax.train: config file {path!r} defines no get_config(); a config "
                      "file returns its ConfigDict from get_config() (see configs/smoke.py).")
  config = module.get_config()
  for dotted, value in overrides.items():
    *parents, leaf = dotted.split(".")
    node = config
    for name in parents:
      node = node.get(name) if isinstance(node, ml_collections.ConfigDict) else None
    if not isinstance(node, ml_collections.ConfigDict) or leaf not in node:
      raise ConfigError(f"dfax.train: override {dotted!r} names no field of {path}; see the "
                        "fields in dfax/train/config_schema.py.")
    node[leaf] = value
  return config
