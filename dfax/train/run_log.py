"""Where a run's rows go: metrics.jsonl and TensorBoard, with write failures named.

A failed write names the file, the step and the checkpoints that are intact
(docs/reliability.md).
"""

from __future__ import annotations

import os
from typing import Any

from dfax.train import checkpoint, metrics, tensorboard
from dfax.train.errors import WriteFailedError


def event_writer(workdir: str, start: int, config: dict, split: str):
  """The run's TensorBoard writer (``purge_step=start``: a resume drops later events)."""
  try:
    return tensorboard.EventWriter(workdir, purge_step=start, config=config,
                                   metric_tags=(f"{split}_accuracy", f"{split}_loss",
                                                "train_loss"))
  except OSError as e:
    raise WriteFailedError(f"dfax.train: could not create the TensorBoard event file in "
                           f"{workdir}: {checkpoint.write_failure_reason(e)}; nothing was "
                           "trained. Free space (or set --config.tensorboard=False) and rerun "
                           "the same command.") from None


class RunLog:
  """Rows to metrics.jsonl and TensorBoard; a failed write names the file and the step."""

  def __init__(self, writer: metrics.MetricsWriter, events, ckpts: checkpoint.Checkpoints):
    self.writer, self.events, self.ckpts = writer, events, ckpts

  def finish(self) -> None:
    """Flushes and closes the TensorBoard events: part of completing a run."""
    try:
      self.close_events(quiet=False)
    except Exception as e:  # noqa: BLE001 - tensorboardX raises its own types too
      raise WriteFailedError(
          f"dfax.train: could not flush the TensorBoard events to "
          f"{os.path.dirname(self.writer.path)}: {checkpoint.write_failure_reason(e)}; the "
          f"checkpoints (steps {self.ckpts.steps()}) and metrics.jsonl are intact. Free "
          "space and rerun the same command to complete the run.") from None

  def close_events(self, quiet: bool = True) -> None:
    events, self.events = self.events, None
    if events is not None:
      try:
        events.close()
      except Exception:  # noqa: BLE001 - closing after a failure must not hide it
        if not quiet:
          raise

  def write(self, row: dict[str, Any]) -> None:
    row = metrics.plain(row)
    try:
      self.writer.write(row)
      if self.events is not None:
        self.events.write(row)
    except OSError as e:
      raise WriteFailedError(
          f"dfax.train: could not write the metrics of step {row['step']} to "
          f"{os.path.dirname(self.writer.path)}: {checkpoint.write_failure_reason(e)}; the "
          f"checkpoints (steps {self.ckpts.steps()}) are intact.") from None

  def write_events(self, row: dict[str, Any]) -> None:
    """A row for TensorBoard only (throughput: a resume could not reproduce it)."""
    if self.events is not None:
      try:
        self.events.write(metrics.plain(row))
      except OSError as e:
        raise WriteFailedError(
            f"dfax.train: could not write the TensorBoard events of step {row['step']} to "
            f"{os.path.dirname(self.writer.path)}: {checkpoint.write_failure_reason(e)}; the "
            f"checkpoints (steps {self.ckpts.steps()}) are intact.") from None
