"""Resuming a workdir: the saved config against the new one, and the change log.

``config.json`` holds the config the workdir's run was started (or last
explicitly changed) with. A resume with a config that differs in a key that
alters the run is refused with the list of differences unless the key is
named in ``allow_changes`` (``--allow_changes`` on the CLI). Keys in
:data:`FREE_KEYS` only change how the run is observed or where it runs and
may change freely. Every change, allowed or free, is appended to
``changes.jsonl`` in the workdir.

Examples:
  >>> diff_configs({"learning_rate": 1e-3}, {"learning_rate": 3e-3})
  {'learning_rate': (0.001, 0.003)}
"""

from __future__ import annotations

import datetime
import json
import os
from typing import Any, Iterable

from dfax.train.errors import ConfigChangedError

# Keys whose change leaves the trajectory of the parameters unchanged ("data_path": the same
# data, by content fingerprint, read from another folder; see dfax.train.data_identity;
# "model.scan_unroll": the same function compiled with more blocks per loop iteration).
FREE_KEYS = ("name", "data_dir", "progress_bar", "log_every", "eval_every", "eval_batch_size",
             "alignment_every", "checkpoint_every", "max_to_keep", "mesh.data", "mesh.model",
             "tensorboard", "data_path", "model.scan_unroll")
CHANGES = "changes.jsonl"


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
  """``{"a": {"b": 1}} -> {"a.b": 1}``, with tuples as lists (as JSON stores them).

  Examples:
    >>> flatten({"a": {"b": (1, 2)}, "c": 3})
    {'a.b': [1, 2], 'c': 3}
  """
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out.update(flatten(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = json.loads(json.dumps(value))
  return out


def diff_configs(saved: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
  """``{key: (saved value, new value)}`` for every dotted key that differs.

  A key present on one side only shows ``"<absent>"`` on the other.

  Examples:
    >>> diff_configs({"lr": 1, "m": {"a": 1}}, {"lr": 2, "m": {"a": 1}})
    {'lr': (1, 2)}
  """
  a, b = flatten(saved), flatten(new)
  return {k: (a.get(k, "<absent>"), b.get(k, "<absent>"))
          for k in sorted(set(a) | set(b)) if a.get(k, "<absent>") != b.get(k, "<absent>")}


def _is_allowed(key: str, allow: Iterable[str]) -> bool:
  return any(key == a or key.startswith(a + ".") for a in allow)


def check_changes(saved: dict[str, Any], new: dict[str, Any], allow: Iterable[str],
                  workdir: str) -> dict[str, tuple[Any, Any]]:
  """The changes between the saved and the new config, if all are free or allowed.

  Args:
    saved: the workdir's ``config.json``.
    new: the config of this start, as a plain dict.
    allow: dotted keys (or sections such as ``"dfa"``) the user allows to change.
    workdir: named in the error.

  Returns:
    ``{key: (old, new)}`` of every difference.

  Raises:
    ConfigChangedError: listing each run-altering difference not allowed, and
      the flag that allows them.
  """
  changes = diff_configs(saved, new)
  refused = {k: v for k, v in changes.items()
             if not _is_allowed(k, FREE_KEYS) and not _is_allowed(k, allow)}
  if refused:
    lines = "\n".join(f"  {k}: {old!r} -> {new!r}" for k, (old, new) in refused.items())
    raise ConfigChangedError(
        f"dfax.train: {workdir} holds a run with a different config; resuming would mix two "
        f"runs. Differences:\n{lines}\nTo continue this run with the change on purpose, add "
        f"--allow_changes={','.join(refused)} (allow_changes=... in Python); the change is "
        "recorded in changes.jsonl. Otherwise use a new --workdir.")
  return changes


def record_changes(workdir: str, step: int,
                   changes: dict[str, tuple[Any, Any]]) -> dict[str, Any]:
  """Appends one row to ``changes.jsonl`` and returns it."""
  row = {"step": step,
         "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
         "changes": {k: {"from": old, "to": new,
                         "kind": "free" if _is_allowed(k, FREE_KEYS) else "allowed"}
                     for k, (old, new) in changes.items()}}
  _append(workdir, row)
  return row


def record_skips(workdir: str, step: int, skips: Iterable[int]) -> None:
  """Appends the steps whose batches are skipped, so later resumes skip them too."""
  _append(workdir, {"step": step, "skip_batches": sorted(skips)})


def _append(workdir: str, row: dict[str, Any]) -> None:
  with open(os.path.join(workdir, CHANGES), "a") as f:
    f.write(json.dumps(row) + "\n")
    f.flush()
    os.fsync(f.fileno())


def read_changes(workdir: str) -> list[dict[str, Any]]:
  """The rows of ``changes.jsonl`` ([] if none); a torn last line is ignored."""
  path = os.path.join(workdir, CHANGES)
  if not os.path.exists(path):
    return []
  rows = []
  with open(path) as f:
    for line in f:
      try:
        rows.append(json.loads(line))
      except ValueError:
        pass
  return rows


def recorded_skips(workdir: str) -> set[int]:
  """Every step whose batch a start of this workdir asked to skip."""
  return {s for row in read_changes(workdir) for s in row.get("skip_batches", [])}
