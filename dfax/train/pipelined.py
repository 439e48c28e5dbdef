"""Pipeline-parallel gradients for the trainer: ``config.mesh.stage > 1``.

With ``--config.mesh.stage=S`` a model family that can be split into stages
(its record's ``pipeline_parts``, ``dfax.train.families``) trains over a
``(data, stage)`` device mesh with its method's pipeline (the record's
``pipeline``, ``dfax.train.methods``): ``dfax.parallel.pipeline.dfa_pipeline``
for ``method=dfa`` (no backward bubble), ``backprop_pipeline`` for
``method=bp``, each with
``config.mesh.microbatches`` microbatches per data shard. The gradients equal
the one-device step's (``mesh.stage=1``) of the same config, so a run can move
between the two.

Examples:
  From the shell (4 devices; on CPU set
  ``XLA_FLAGS=--xla_force_host_platform_device_count=4``):

  ```bash
  python -m dfax.train --config configs/mnist_pipeline.py --workdir workdirs/pipe \\
      --config.mesh.stage=4 --config.mesh.microbatches=4
  ```
"""

from __future__ import annotations

from typing import Any, Callable

import jax
from jax.sharding import NamedSharding, PartitionSpec as P

from dfax.parallel import make_pipeline_mesh
from dfax.models.stack import from_pipeline, to_pipeline
from dfax.train import families
from dfax.train.errors import ConfigError

PIPELINE_FEEDBACK = "markers"  # the pipeline's points are the model's stage markers


def is_pipelined(config) -> bool:
  """Whether the run trains over a ``stage`` mesh axis."""
  return config.mesh.stage > 1


def check_pipeline(config) -> None:
  """Checks a pipelined config before anything is built or written.

  Raises:
    ConfigError: naming the key to change.
  """
  mesh = config.mesh
  for key in ("stage", "microbatches"):
    if not isinstance(mesh[key], int) or isinstance(mesh[key], bool) or mesh[key] < 1:
      raise ConfigError(f"dfax.train: mesh.{key}={mesh[key]!r} must be an integer >= 1; "
                        f"e.g. --config.mesh.{key}=1.")
  if not is_pipelined(config):
    if mesh.microbatches != 1:
      raise ConfigError(f"dfax.train: mesh.microbatches={mesh.microbatches} only applies to "
                        "a pipeline; set --config.mesh.stage to the number of stages, or "
                        "leave mesh.microbatches=1.")
    return
  from dfax.train import methods  # noqa: PLC0415  (methods builds on this module)

  name = config.model.name
  splittable = [f.name for f in families.FAMILIES.values() if f.pipeline_parts]
  if name not in splittable:
    raise ConfigError(f"dfax.train: mesh.stage={mesh.stage} needs a model family the pipeline "
                      f"can split ({', '.join(splittable)}), not {name!r}; set "
                      "--config.mesh.stage=1 or use configs/mnist_pipeline.py.")
  if mesh.model != 1:
    raise ConfigError(f"dfax.train: mesh.stage={mesh.stage} combines with mesh.data, not "
                      f"with mesh.model={mesh.model}; set --config.mesh.model=1.")
  pipelined_methods = [m.name for m in methods.METHODS.values() if m.pipeline]
  if config.method not in pipelined_methods:
    raise ConfigError(f"dfax.train: method={config.method!r} has no pipeline; use one of "
                      f"{', '.join(pipelined_methods)} or --config.mesh.stage=1.")
  if config.model.num_stages != mesh.stage:
    raise ConfigError(f"dfax.train: mesh.stage={mesh.stage} but the model has "
                      f"model.num_stages={config.model.num_stages}; set "
                      f"--config.model.num_stages={mesh.stage}.")
  if methods.METHODS[config.method].uses_feedback and config.dfa.feedback != PIPELINE_FEEDBACK:
    raise ConfigError(f"dfax.train: the pipeline's feedback points are the model's stage "
                      f"markers; set --config.dfa.feedback={PIPELINE_FEEDBACK} (got "
                      f"{config.dfa.feedback!r}).")
  shards = mesh.data * mesh.microbatches
  if config.batch_size % shards:
    raise ConfigError(f"dfax.train: batch_size={config.batch_size} must split into "
                      f"mesh.data x mesh.microbatches = {shards} equal microbatches; e.g. "
                      f"--config.batch_size={max(shards, config.batch_size // shards * shards)}.")
  if config.eval_batch_size % mesh.data:
    raise ConfigError(f"dfax.train: eval_batch_size={config.eval_batch_size} must be a "
                      f"multiple of mesh.data={mesh.data}.")
  need = mesh.data * mesh.stage
  if need > jax.device_count():
    raise ConfigError(f"dfax.train: mesh.data={mesh.data} x mesh.stage={mesh.stage} needs "
                      f"{need} devices, this process has {jax.device_count()}; on CPU set "
                      f"XLA_FLAGS=--xla_force_host_platform_device_count={need}.")


def value_and_grad(config, model, method, step=None) -> Callable[..., Any]:
  """``(params, x, y) -> (mean loss, grads)`` through the pipeline; linen params in and out.

  Args:
    config: a config that passed :func:`check_pipeline`.
    model: the linen model (its params are converted to the pipeline's layout).
    method: the ``dfax.train.methods.Method`` record; its ``pipeline`` builds
      the gradient function.
    step: the train step (a noisy projector's noise key).

  Returns:
    The pipelined gradient function.
  """
  mesh = make_pipeline_mesh(config.mesh.stage, config.mesh.data)
  parts = families.get(config.model.name).pipeline_parts(model)
  grad_fn = method.pipeline(parts, mesh, config.mesh.microbatches, config, step)

  def fn(params, x, y):
    loss, grads = grad_fn(to_pipeline(params), x, y)
    return loss, from_pipeline(grads)

  return fn


def placers(config) -> tuple[Callable, Callable]:
  """(place_state, place_batch) on the ``(data, stage)`` mesh: stages sharded, batch over data."""
  mesh = make_pipeline_mesh(config.mesh.stage, config.mesh.data)

  def spec(path, leaf):
    keys = [getattr(k, "key", None) for k in path]
    return NamedSharding(mesh, P("stage") if "stages" in keys and leaf.ndim else P())

  place_state = lambda s: jax.device_put(s, jax.tree_util.tree_map_with_path(spec, s))
  return place_state, lambda x: jax.device_put(x, NamedSharding(mesh, P("data")))
