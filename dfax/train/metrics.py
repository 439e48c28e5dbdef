"""metrics.jsonl, results.json and config.json in the workdir.

``metrics.jsonl`` is only ever appended to. When a resume must drop rows
(those past the restored step, or a line torn by a kill), the kept rows are
written aside and renamed over the file, so a kill at any moment leaves
either the old file or the new one, never a truncated mix.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

from absl import logging

from dfax.train.errors import ResumeError

# What dfax called every evaluation before it named the split; older workdirs hold it.
LEGACY_SPLIT = "eval"


def eval_split(dataset_name: str) -> str:
  """The name of the split a data set evaluates on: ``"test"`` or ``"val"``.

  It comes from the data set's record, ``datasets.DATASETS[name].eval_split``
  (a name with no record: ``"test"``). Evaluation metrics carry it:
  ``test_loss`` and ``test_accuracy`` for MNIST, MNIST-1D and CIFAR-10 (their
  test sets), ``val_loss`` and ``val_accuracy`` for Shakespeare (a held-out
  validation split of the corpus), in metrics.jsonl, results.json,
  TensorBoard, the plots and the progress bar.

  Examples:
    >>> eval_split("mnist"), eval_split("shakespeare")
    ('test', 'val')
  """
  from dfax.train import datasets  # noqa: PLC0415 - the records import the data loaders

  return getattr(datasets.DATASETS.get(dataset_name), "eval_split", "test")


def eval_values(row: dict[str, Any], split: str) -> dict[str, float] | None:
  """``{"loss", "accuracy"}`` of an evaluation row, or None for another kind of row.

  Reads ``<split>_loss``/``<split>_accuracy``, and the ``eval_loss``/
  ``eval_accuracy`` of rows written before the split was named (a workdir
  from an older dfax, resumed), so one run's curve stays whole.

  Examples:
    >>> eval_values({"step": 5, "test_loss": 0.5, "test_accuracy": 0.9}, "test")
    {'loss': 0.5, 'accuracy': 0.9}
    >>> eval_values({"step": 5, "eval_loss": 0.5, "eval_accuracy": 0.9}, "test")
    {'loss': 0.5, 'accuracy': 0.9}
    >>> eval_values({"step": 5, "train_loss": 2.3}, "test") is None
    True
  """
  for prefix in (split, LEGACY_SPLIT):
    if f"{prefix}_accuracy" in row:
      return {"loss": row.get(f"{prefix}_loss"), "accuracy": row[f"{prefix}_accuracy"]}
  return None


def final_eval(results: dict[str, Any]) -> tuple[str, float | None, float | None]:
  """``(split, accuracy, loss)`` of a results.json: its last evaluation.

  ``results["eval_split"]`` names the split; a results.json written before it
  existed holds ``test_accuracy`` and ``test_loss`` for every data set.

  Examples:
    >>> final_eval({"eval_split": "val", "val_accuracy": 0.5, "val_loss": 1.5})
    ('val', 0.5, 1.5)
    >>> final_eval({"test_accuracy": 0.9, "test_loss": 0.3})
    ('test', 0.9, 0.3)
  """
  split = results.get("eval_split", "test")
  return split, results.get(f"{split}_accuracy"), results.get(f"{split}_loss")


class MetricsWriter:
  """Appends one JSON object per line to ``workdir/metrics.jsonl``.

  Args:
    workdir: the run's directory.
    resume_step: the step the run resumes from; rows past it are dropped
      first (atomically), so the file always describes one uninterrupted run.

  Examples:
    >>> import tempfile
    >>> workdir = tempfile.mkdtemp()
    >>> writer = MetricsWriter(workdir, resume_step=0)
    >>> writer.write({"step": 1, "train_loss": 2.3})
    >>> read_metrics(os.path.join(workdir, "metrics.jsonl"))
    [{'step': 1, 'train_loss': 2.3}]
  """

  def __init__(self, workdir: str, resume_step: int = 0):
    self.path = os.path.join(workdir, "metrics.jsonl")
    if os.path.exists(self.path):
      rows, torn = read_metrics_checked(self.path)
      keep = [r for r in rows if r.get("step", 0) <= resume_step]
      if torn or len(keep) < len(rows):
        _replace_lines(self.path, keep)

  def write(self, row: dict[str, Any]) -> None:
    with open(self.path, "a") as f:
      f.write(json.dumps(plain(row)) + "\n")


def _replace_lines(path: str, rows: list[dict[str, Any]]) -> None:
  tmp = f"{path}.tmp"
  with open(tmp, "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in rows)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def plain(v):
  """A JSON-ready copy: arrays and numpy scalars as floats, non-finite as None (nested)."""
  if isinstance(v, dict):
    return {k: plain(x) for k, x in v.items()}
  v = float(v) if hasattr(v, "__float__") and not isinstance(v, (int, str)) else v
  return None if isinstance(v, float) and not math.isfinite(v) else v


def read_metrics_checked(path: str, warn: bool = True) -> tuple[list[dict[str, Any]], bool]:
  """The rows of a metrics file, and whether its last line was torn (and dropped).

  A last line that is not complete JSON (a kill mid-write) is dropped with a
  warning naming the file; a bad line anywhere else is an error.

  Raises:
    ResumeError: naming the file and line of a damaged line before the last.
  """
  try:
    with open(path, "rb") as f:
      lines = f.read().decode("utf-8", errors="replace").split("\n")
  except OSError as e:
    raise ResumeError(f"dfax.train: cannot read {path} ({e.strerror or e}); make it a readable "
                      "file or move it away.") from None
  rows, torn = [], False
  numbered = [(i, line) for i, line in enumerate(lines, start=1) if line.strip()]
  for n, (i, line) in enumerate(numbered):
    try:
      row = json.loads(line)
      if not isinstance(row, dict):
        raise ValueError("not a JSON object")
      rows.append(row)
    except ValueError:
      if n < len(numbered) - 1:
        raise ResumeError(f"dfax.train: {path} line {i} is not JSON ({line[:60]!r}); the file "
                         "was changed by something other than dfax. Fix or remove that "
                         "line.") from None
      if warn:
        logging.warning("dfax.train: the last line of %s was torn (%d characters, a kill "
                        "mid-write); it is dropped.", path, len(line))
      torn = True
  return rows, torn


def read_metrics(path: str) -> list[dict[str, Any]]:
  """The rows of a metrics file; a torn last line is dropped with a warning."""
  return read_metrics_checked(path)[0]


def write_json(path: str, obj: Any) -> None:
  """Writes ``obj`` as JSON to ``path`` atomically (write aside, fsync, rename)."""
  tmp = path + ".tmp"
  try:
    with open(tmp, "w") as f:
      json.dump(obj, f, indent=2, sort_keys=True, default=plain)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    try:
      os.remove(tmp)  # a full disk leaves no half-written file behind
    except OSError:
      pass
    raise


def read_json(path: str) -> Any | None:
  """The JSON in ``path``, or None if the file is missing.

  Raises:
    ResumeError: naming the file when it is not JSON.
  """
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      return json.load(f)
  except OSError as e:
    raise ResumeError(f"dfax.train: cannot read {path} ({e.strerror or e}); make it a readable "
                      "file or move it away.") from None
  except ValueError as e:
    raise ResumeError(f"dfax.train: {path} is not valid JSON ({e}); restore it or move it "
                     "away.") from None
