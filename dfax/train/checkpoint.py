"""orbax checkpoints of the train state: periodic, keep N, exact resume."""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp


def make_manager(workdir: str, config) -> ocp.CheckpointManager:
  """A CheckpointManager in ``workdir/checkpoints`` keeping ``config.max_to_keep``."""
  options = ocp.CheckpointManagerOptions(max_to_keep=config.max_to_keep, create=True)
  return ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, "checkpoints")),
                               options=options)


def save(manager: ocp.CheckpointManager, state: Any, *, force: bool = False) -> None:
  """Saves ``state`` at its step and waits until it is on disk."""
  step = int(state.step)
  if manager.latest_step() == step:
    return
  manager.save(step, args=ocp.args.StandardSave(state), force=force)
  manager.wait_until_finished()


def restore_latest(manager: ocp.CheckpointManager, like: Any) -> Any | None:
  """The latest saved state (shaped like ``like``), or None if there is none."""
  step = manager.latest_step()
  if step is None:
    return None
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
  return manager.restore(step, args=ocp.args.StandardRestore(abstract))
