"""TensorBoard event files in the workdir, beside metrics.jsonl (the Flax examples' convention).

Every numeric value of a metrics row becomes a scalar at the row's step:
``train_loss``, ``grad_norm``, ``learning_rate`` (the optax schedule's value
for the step's update), the evaluation metrics named by their split
(``test_loss`` and ``test_accuracy``, or ``val_loss`` and ``val_accuracy``
for a data set evaluated on a validation split: ``metrics.eval_split``), and
the alignment diagnostic as ``alignment/<layer>``. Two more scalars are
written to TensorBoard only, since a resumed run could not reproduce them in
metrics.jsonl: the training throughput ``throughput/steps_per_s`` and
``throughput/examples_per_s``, timed over the train steps since the last
logged step (evaluations and checkpoints excluded; the first includes
compilation). The run's config goes to the HPARAMS dashboard (every field,
dotted: ``learning_rate``, ``dfa.projector``, ...), which compares runs by
their final evaluation metrics and ``train_loss``.

Written with tensorboardX (no TensorFlow needed), part of the ``train``
extra; without it the trainer writes metrics.jsonl only. A resumed run passes
its start step as ``purge_step``, so TensorBoard drops what an interrupted
process logged past the checkpoint it resumed from.

  tensorboard --logdir workdirs/
"""

from __future__ import annotations

import json
import math
from typing import Any, Sequence

from absl import logging

try:
  import tensorboardX
except ImportError:  # an optional dependency: the train extra installs it
  tensorboardX = None


def scalars(row: dict[str, Any], prefix: str = "") -> dict[str, float]:
  """The finite numeric values of a metrics row as ``{tag: value}`` (nested dicts joined by /).

  Examples:
    >>> scalars({"step": 5, "test_loss": 0.5, "alignment": {"Dense_0": 0.25}, "note": "x"})
    {'test_loss': 0.5, 'alignment/Dense_0': 0.25}
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


def hparams(config: dict[str, Any], prefix: str = "") -> dict[str, bool | int | float | str]:
  """A config (as JSON) flattened to the values the HPARAMS dashboard takes.

  Nested sections are joined by dots; lists become their JSON text; None is left out.

  Examples:
    >>> hparams({"learning_rate": 0.001, "dfa": {"projector": "gaussian"},
    ...          "model": {"features": [64, 64]}, "data_dir": None})
    {'learning_rate': 0.001, 'dfa.projector': 'gaussian', 'model.features': '[64, 64]'}
  """
  out = {}
  for key, value in config.items():
    if isinstance(value, dict):
      out.update(hparams(value, f"{prefix}{key}."))
    elif isinstance(value, (bool, int, float, str)):
      out[f"{prefix}{key}"] = value
    elif value is not None:
      out[f"{prefix}{key}"] = json.dumps(value, default=str)
  return out


class EventWriter:
  """Scalars of metrics rows into TensorBoard event files in ``workdir``.

  Args:
    workdir: the run's directory (the event files go there).
    purge_step: the step a resumed run starts from; earlier processes' events
      at or after it are hidden by TensorBoard.
    config: the run's config as JSON, written to the HPARAMS dashboard.
    metric_tags: the scalars that dashboard compares runs by.

  Examples:
    >>> import os, tempfile
    >>> workdir = tempfile.mkdtemp()
    >>> events = EventWriter(workdir, purge_step=0)
    >>> events.write({"step": 10, "train_loss": 2.1})
    >>> events.close()
    >>> any(f.startswith("events.out.tfevents") for f in os.listdir(workdir))
    True
  """

  def __init__(self, workdir: str, purge_step: int | None = None,
               config: dict[str, Any] | None = None, metric_tags: Sequence[str] = ()):
    self._writer = None
    if tensorboardX is None:
      logging.info("dfax.train: tensorboardX is not installed; no TensorBoard event files.")
      return
    self._writer = tensorboardX.SummaryWriter(logdir=workdir, purge_step=purge_step or None,
                                              flush_secs=30)
    if config is not None:
      self._write_hparams(config, metric_tags)

  def _write_hparams(self, config: dict[str, Any], metric_tags: Sequence[str]) -> None:
    """The hparams plugin's experiment and session-start summaries, in this run's own file.

    (``SummaryWriter.add_hparams`` would put them in a new sub-run of their own,
    apart from the scalars the dashboard compares runs by.)
    """
    experiment, session_start, _ = tensorboardX.summary.hparams(
        hparams(config), {tag: None for tag in metric_tags})
    file_writer = self._writer._get_file_writer()  # noqa: SLF001 - as add_hparams does
    file_writer.add_summary(experiment)
    file_writer.add_summary(session_start)

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
