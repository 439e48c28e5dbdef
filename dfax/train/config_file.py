"""Loading a config file outside the CLI (tests, notebooks, scripts)."""

from __future__ import annotations

import importlib.util
import os

import ml_collections

from dfax.train.errors import ConfigError


def _where(e: BaseException, path: str) -> str:
  """' (line N)' of the innermost frame of ``e`` in the file ``path``, or ''."""
  if isinstance(e, SyntaxError) and e.lineno:
    return f" (line {e.lineno})"
  line, tb = None, e.__traceback__
  while tb is not None:
    if os.path.abspath(tb.tb_frame.f_code.co_filename) == os.path.abspath(path):
      line = tb.tb_lineno
    tb = tb.tb_next
  return f" (line {line})" if line else ""


def _run_get_config(path: str) -> ml_collections.ConfigDict:
  """Imports the config file and returns what its ``get_config()`` returns, checked.

  Raises:
    ConfigError: one line for a file that fails to import (a syntax error, a
      failing import), defines no ``get_config``, raises in it, or returns
      something other than a ConfigDict.
  """
  fix = "fix the file, or start from configs/smoke.py"
  spec = importlib.util.spec_from_file_location(f"dfax_config_{abs(hash(path))}", path)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except Exception as e:  # noqa: BLE001 - anything the file raises while importing
    kind = "has a syntax error" if isinstance(e, SyntaxError) else "fails to import"
    detail = e.msg if isinstance(e, SyntaxError) else str(e)
    raise ConfigError(f"dfax.train: config file {path!r} {kind}{_where(e, path)}: "
                      f"{type(e).__name__}: {detail}; {fix}.") from None
  if not callable(getattr(module, "get_config", None)):
    raise ConfigError(f"dfax.train: config file {path!r} defines no get_config(); a config "
                      "file returns its ConfigDict from get_config() (see configs/smoke.py).")
  try:
    config = module.get_config()
  except Exception as e:  # noqa: BLE001
    raise ConfigError(f"dfax.train: get_config() of config file {path!r} raised"
                      f"{_where(e, path)}: {type(e).__name__}: {e}; {fix}.") from None
  if not isinstance(config, ml_collections.ConfigDict):
    raise ConfigError(f"dfax.train: get_config() of config file {path!r} returned "
                      f"{type(config).__name__}, not an ml_collections.ConfigDict; end it with "
                      "`return config` (see configs/smoke.py).")
  return config


def load_config(path: str | os.PathLike, **overrides) -> ml_collections.ConfigDict:
  """Runs ``get_config()`` of a config file and applies dotted overrides.

  Args:
    path: a Python file defining ``get_config()`` (see configs/).
    **overrides: ``{"dotted.key": value}``; each key must exist in the config.

  Returns:
    The config.

  Raises:
    ConfigError: naming the path when the file is missing, fails to import,
      has no ``get_config`` or returns no ConfigDict, or the key when an
      override names no field.

  Examples:
    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "my_config.py"
    >>> _ = path.write_text(
    ...     "from dfax.train.config_schema import default_config" + chr(10) +
    ...     "def get_config(): return default_config()" + chr(10))
    >>> config = load_config(path, method="bp", **{"dataset.train_limit": 512})
    >>> config.method, config.dataset.train_limit
    ('bp', 512)
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise ConfigError(f"dfax.train: config file {path!r} does not exist; give the path of a "
                      "file such as configs/smoke.py.")
  config = _run_get_config(path)
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
