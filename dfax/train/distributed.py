"""Multi-host runs of the training CLI: one process per host, process 0 owns the workdir.

``python -m dfax.train --multihost ...`` starts ``jax.distributed`` before
anything else, on every host of a GPU cluster or TPU slice. With no address
given, JAX reads the coordinator, process count and index from the
environment the cluster sets (SLURM, Open MPI, TPU VMs, Kubernetes).

Every process builds the same model, data and batch order, and the trainer
shards each global batch over the devices of all processes (``mesh.data``
counts every device). Only process 0 reads and writes the workdir: lock,
checkpoints, metrics, plots and results; it hands the state it starts from
to the others (``share_from_primary``). The workdir therefore need not be
shared between hosts.
"""

from __future__ import annotations

from typing import Any, Iterable

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding

from dfax.train.errors import ConfigError


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> None:
  """Starts ``jax.distributed``; arguments left None come from the cluster's environment.

  Args:
    coordinator_address: ``host:port`` of process 0.
    num_processes: how many processes the run has.
    process_id: this process's index, from 0.

  Raises:
    ConfigError: JAX could not start (no cluster environment and no address).
  """
  # CPU devices of different processes talk through gloo; GPUs and TPUs are unaffected.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  try:
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id)
  except (ValueError, RuntimeError) as e:
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise ConfigError(f"dfax.train: --multihost could not start jax.distributed ({first}); "
                      "outside SLURM, Open MPI or a TPU VM give --coordinator_address="
                      "HOST:PORT --num_processes=N --process_id=I.") from None


def is_multiprocess() -> bool:
  """Whether this run spans several processes."""
  return jax.process_count() > 1


def is_primary() -> bool:
  """Whether this process reads and writes the workdir (process 0)."""
  return jax.process_index() == 0


def global_array(value: Any, sharding: NamedSharding) -> jax.Array:
  """A global array over ``sharding`` from a host value that every process holds whole.

  Args:
    value: an array with the same contents on every process.
    sharding: where its pieces go, over the devices of all processes.

  Returns:
    A ``jax.Array`` whose local shards are this process's slices of ``value``.
  """
  value = np.asarray(value)
  return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])


def share_from_primary(tree: Any) -> Any:
  """Process 0's ``tree`` on every process (the others pass one of the same structure)."""
  return multihost_utils.broadcast_one_to_all(tree)


class Announce:
  """Process 0 tells the other processes of a multi-host run how the run starts.

  One broadcast of (code, start step) and, when training starts, one of the
  state and the skipped steps; every process makes the same calls.
  """

  STARTS, COMPLETE, REFUSED = 0, 1, 2

  def __init__(self, total_steps: int):
    self.total_steps, self.done = total_steps, not is_multiprocess()

  def _send(self, code: int, start: int) -> None:
    self.done = True
    share_from_primary(np.array([code, start], np.int64))

  def complete(self) -> None:
    if not self.done:
      self._send(self.COMPLETE, -1)

  def refused(self) -> None:
    if not self.done:
      self._send(self.REFUSED, -1)

  def starts(self, state, start: int, skips: set[int]) -> None:
    if not self.done:
      self._send(self.STARTS, start)
      share_from_primary((state, skip_mask(skips, self.total_steps)))


def skip_mask(skips: Iterable[int], total_steps: int) -> np.ndarray:
  """The skipped steps as a fixed-size mask, which a broadcast can carry."""
  mask = np.zeros(total_steps, np.bool_)
  mask[[s for s in skips if 0 <= s < total_steps]] = True
  return mask


class NoLog:
  """A follower's metrics: process 0 writes them."""

  def write(self, row: dict[str, Any]) -> None:
    del row

  def write_events(self, row: dict[str, Any]) -> None:
    del row

  def finish(self) -> None:
    pass


class NoCheckpoints:
  """A follower's checkpoints: process 0 saves them."""

  def save(self, state: Any, *, force: bool = False) -> None:
    del state, force

  def rewind(self, keep: Any | None, bad_step: int, reason: str) -> list[int]:
    del keep, bad_step, reason
    return []
