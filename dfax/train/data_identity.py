"""The data a run trains on is part of its identity: ``data.json`` in the workdir.

A start records what its data set was read from and a fingerprint of the
content (:mod:`dfax.data.identity`); a resume compares them. Other content
(another ``--config.data_dir``, another ``DFAX_DATA_DIR``, changed files) is
refused, naming both, unless ``data`` is in ``allow_changes``; the change is
then recorded in ``changes.jsonl``. The same content at another path is not
a change of data; the new path is recorded (as ``data_path``, a free change).

Examples:
  ```python
  ident = identify(config, task)   # {"dataset": "mnist", "path": ..., "fingerprint": ...}
  check(saved, ident, allow_changes=(), workdir=workdir)
  ```
"""

from __future__ import annotations

import os
from typing import Any, Iterable

from dfax.data import identity
from dfax.train import datasets
from dfax.train.errors import ConfigChangedError, ConfigError

DATA = "data.json"
ALLOW_KEY = "data"


def check_env() -> None:
  """An explicitly set ``DFAX_DATA_DIR`` must be a folder (never silently ignored)."""
  env = os.environ.get("DFAX_DATA_DIR")
  if env and not os.path.isdir(os.path.expanduser(env)):
    what = "is a file" if os.path.exists(os.path.expanduser(env)) else "does not exist"
    raise ConfigError(f"dfax.train: DFAX_DATA_DIR={env} {what}; set it to a folder of data "
                      "sets (e.g. one holding mnist/), or unset it to use the copies shipped "
                      "with dfax.")


def identify(config, task) -> dict[str, Any]:
  """What this config's data set was read from, and its content fingerprint.

  Args:
    config: the run config (``dataset.name``, ``dataset.source``, ``data_dir``).
    task: the loaded ``datasets.TaskData`` (its evaluation arrays identify a
      data set that has no files, e.g. a generated or user-registered one).
  """
  name = config.dataset.name
  record = datasets.DATASETS.get(name)
  ident = None
  try:
    if record is not None and record.identify is not None:
      ident = record.identify(config)
  except OSError:
    ident = None
  if ident is None:
    ident = identity.arrays_identity(task.x_eval, task.y_eval,
                                     source="the evaluation arrays as loaded")
  return {"dataset": name, **ident}


def check(saved: dict[str, Any] | None, new: dict[str, Any], allow: Iterable[str],
          workdir: str) -> dict[str, tuple[Any, Any]]:
  """The data changes between a workdir's ``data.json`` and this start.

  Returns:
    ``{}`` (same data, or nothing recorded), ``{"data_path": (old, new)}``
    (same content elsewhere), or ``{"data": (old, new)}`` when allowed.

  Raises:
    ConfigChangedError: other content, not allowed; naming both identities.
  """
  if not saved:
    return {}
  same = (saved.get("dataset"), saved.get("fingerprint")) == (new.get("dataset"),
                                                            new.get("fingerprint"))
  if same:
    return {"data_path": (saved.get("path"), new.get("path"))} \
        if saved.get("path") != new.get("path") else {}
  if ALLOW_KEY in tuple(allow):
    return {ALLOW_KEY: (saved, new)}
  raise ConfigChangedError(
      f"dfax.train: {workdir} was trained on {identity.describe(saved)} but this start reads "
      f"{identity.describe(new)}; resuming would mix two data sets. Point --config.data_dir "
      "or DFAX_DATA_DIR back at the recorded data, or, if the change is on purpose, add "
      "--allow_changes=data (allow_changes=['data'] in Python; it is recorded in "
      "changes.jsonl), or use a new --workdir.")
