"""TensorBoard event files in the workdir, beside metrics.jsonl (the Flax examples' convention).

Every numeric value of a metrics row becomes a scalar at the row's step:
``train_loss``, ``grad_norm``, ``eval_loss``, ``eval_accuracy``, and the
alignment diagnostic as ``alignment/<layer>``. Written with tensorboardX
(no TensorFlow needed), part of the ``train`` extra; without it the trainer
writes metrics.jsonl only. A resumed run passes its start step as
``purge_step``, so TensorBoard drops what an interrupted process logged past
the checkpoint it resumed from.

  tensorboard --logdir workdirs/
"""

from __future__ import annotations

import math
from typing import Any

from absl import logging

try:
  import tensorboardX
except ImportError:  # an optional dependency: the train extra installs it
  tensorboardX = None


def scalars(row: dict[str, Any], prefix: str = "") -> dict[str, float]:
  """The finite numeric values of a metrics row as ``{tag: value}`` (nested dicts joined by /).

  Examples:
    >>> scalars({"step": 5, "eval_loss": 0.5, "alignment": {"Dense_0": 0.25}, "note": "x"})
    {'eval_loss': 0.5, 'alignment/Dense_0': 0.25}
  """
  out = {}
  for key, value in row.items():
    if key == "step" and not prefix:
      continue
    if isinstance(value, dict):
      out.update(scalars(value, f"{prefix}{key}/"))
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
      out[f"{prefix}{key}"] = float(value)
  return out


class EventWriter:
  """Scalars of metrics rows into TensorBoard event files in ``workdir``.

  Args:
    workdir: the run's directory (the event files go there).
    purge_step: the step a resumed run starts from; earlier processes' events
      at or after it are hidden by TensorBoard.

  Examples:
    >>> import os, tempfile
    >>> workdir = tempfile.mkdtemp()
    >>> events = EventWriter(workdir, purge_step=0)
    >>> events.write({"step": 10, "train_loss": 2.1})
    >>> events.close()
    >>> any(f.startswith("events.out.tfevents") for f in os.listdir(workdir))
    True
  """

  def __init__(self, workdir: str, purge_step: int | None = None):
    self._writer = None
    if tensorboardX is None:
      logging.info("dfax.train: tensorboardX is not installed; no TensorBoard event files.")
      return
    self._writer = tensorboardX.SummaryWriter(logdir=workdir, purge_step=purge_step or None,
                                              flush_secs=30)

  @property
  def enabled(self) -> bool:
    return self._writer is not None

  def write(self, row: dict[str, Any]) -> None:
    if self._writer is None:
      return
    for tag, value in scalars(row).items():
      self._writer.add_scalar(tag, value, global_step=int(row["step"]))

  def flush(self) -> None:
    if self._writer is not None:
      self._writer.flush()

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()
      self._writer = None
