"""Device meshes and sharding rules for data- and model-parallel DFA training.

DFA needs no special collectives: each device regenerates the slice of every
feedback matrix it needs from the same keys, so a sharded DFA step has no more
collectives than the sharded backprop step (see ``count_collectives``).
"""

from __future__ import annotations

import re

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def make_mesh(data: int, model: int = 1, devices=None) -> Mesh:
  """A ``(data, model)`` mesh over the first ``data * model`` devices.

  Examples:
    On 8 devices ``make_mesh(4, 2)`` puts the batch over 4 and the kernels
    over 2; on one device:

    >>> mesh = make_mesh(1, 1)
    >>> dict(mesh.shape)
    {'data': 1, 'model': 1}
  """
  devices = jax.devices() if devices is None else devices
  need = data * model
  if len(devices) < need:
    raise ValueError(f"dfax.parallel: a {data}x{model} mesh needs {need} devices, "
                     f"{len(devices)} available. On CPU set XLA_FLAGS="
                     f"--xla_force_host_platform_device_count={need}.")
  return Mesh(np.array(devices[:need]).reshape(data, model), ("data", "model"))


def param_spec(value, model_size: int) -> P:
  """Shards the largest dim divisible by the 'model' axis of 2D+ arrays; replicates the rest."""
  shape = getattr(value, "shape", ())
  if model_size <= 1 or len(shape) < 2:
    return P()
  dims = sorted(range(len(shape)), key=lambda d: -shape[d])
  for d in dims:
    if shape[d] % model_size == 0:
      spec = [None] * len(shape)
      spec[d] = "model"
      return P(*spec)
  return P()


def shard_params(tree, mesh: Mesh):
  """NamedShardings for a pytree of params or optimizer state on ``mesh``."""
  size = mesh.shape["model"]
  return jax.tree.map(lambda v: NamedSharding(mesh, param_spec(v, size)), tree)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) dim over 'data', the rest replicated."""
  return NamedSharding(mesh, P("data"))


_COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "collective-permute",
                "all-to-all")


def count_collectives(hlo_text: str) -> dict[str, int]:
  """Counts collective ops in compiled HLO text (``compiled.as_text()``).

  Examples:
    >>> import jax.numpy as jnp
    >>> step = lambda w, x: jnp.tanh(x @ w).sum()
    >>> hlo = jax.jit(step).lower(jnp.ones((4, 4)), jnp.ones((2, 4))).compile().as_text()
    >>> count_collectives(hlo)     # one device: no collectives
    {'all-reduce': 0, 'all-gather': 0, 'reduce-scatter': 0, 'collective-permute': 0, 'all-to-all': 0}
  """
  counts = {}
  for op in _COLLECTIVES:
    counts[op] = len(re.findall(rf"= [^=\n]*\b{op}(?:-start)?\(", hlo_text))
  return counts


def make_pipeline_mesh(stage: int, data: int = 1, devices=None) -> Mesh:
  """A ``(data, stage)`` mesh for ``dfax.parallel.pipeline`` over ``data * stage`` devices.

  Examples:
    On 8 devices ``make_pipeline_mesh(4, data=2)`` gives 4 stages and 2 data
    shards; on one device:

    >>> mesh = make_pipeline_mesh(1)
    >>> dict(mesh.shape)
    {'data': 1, 'stage': 1}
  """
  devices = jax.devices() if devices is None else devices
  need = data * stage
  if len(devices) < need:
    raise ValueError(f"dfax.parallel: a pipeline of {stage} stages x {data} data shards needs "
                     f"{need} devices, {len(devices)} available. On CPU set XLA_FLAGS="
                     f"--xla_force_host_platform_device_count={need}.")
  return Mesh(np.array(devices[:need]).reshape(data, stage), ("data", "stage"))
