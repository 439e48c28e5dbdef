"""How many devices a run shards its batch over: every device, unless told.

``config.mesh.data`` is the number of data shards. Its default, 0, means "as
many as the devices allow", as Flax's examples use every device by default:
the largest count that fits ``jax.device_count() // (mesh.model * mesh.stage)``
and divides the batch (and, in a pipeline, each data shard's microbatches and
the evaluation batch). A positive value is taken as given.

Examples:
  >>> auto_data_shards(device_count=8, batch_size=128)
  8
  >>> auto_data_shards(device_count=8, batch_size=100)  # 8 does not divide 100
  5
  >>> auto_data_shards(device_count=8, batch_size=64, per_shard=2)  # mesh.model=2
  4
"""

from __future__ import annotations

import jax

AUTO = 0


def auto_data_shards(device_count: int, batch_size: int, *, per_shard: int = 1,
                     microbatches: int = 1, eval_batch_size: int | None = None) -> int:
  """The most data shards that the devices hold and the batch divides into.

  Args:
    device_count: devices of the run (every process's, ``jax.device_count()``).
    batch_size: the global training batch.
    per_shard: devices each data shard uses (``mesh.model * mesh.stage``).
    microbatches: microbatches per data shard (pipelines).
    eval_batch_size: for pipelines, whose evaluation batch is sharded too.

  Returns:
    An integer from 1 to ``device_count // per_shard``.
  """
  most = max(device_count // per_shard, 1)
  for shards in range(most, 0, -1):
    if batch_size % (shards * microbatches):
      continue
    if eval_batch_size is not None and eval_batch_size % shards:
      continue
    return shards
  return 1


def resolve_data_shards(config) -> int:
  """Sets ``config.mesh.data`` when it is ``AUTO`` (0); returns the count in use.

  Args:
    config: a run config that passed ``validate.check_config``; changed in place.

  Returns:
    ``config.mesh.data`` after resolution.
  """
  mesh = config.mesh
  if mesh.data == AUTO:
    pipelined = mesh.stage > 1
    mesh.data = auto_data_shards(
        jax.device_count(), config.batch_size, per_shard=mesh.model * mesh.stage,
        microbatches=mesh.microbatches if pipelined else 1,
        eval_batch_size=config.eval_batch_size if pipelined else None)
  return mesh.data
