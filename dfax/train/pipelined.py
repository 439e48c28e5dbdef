"""Pipeline-parallel gradients for the trainer: ``config.mesh.stage > 1``.

With ``--config.mesh.stage=S`` a model family that can be split into stages
(:data:`PIPELINE_MODELS`) trains over a ``(data, stage)`` device mesh:
``dfax.parallel.pipeline.dfa_pipeline`` for ``method=dfa`` (no backward
bubble), ``backprop_pipeline`` for ``method=bp``, each with
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

from dfax.parallel import feedback, make_pipeline_mesh, pipeline
from dfax.parallel.stack import from_pipeline, pipeline_parts, to_pipeline
from dfax.train.errors import ConfigError

# config.model.name -> (model -> PipelineParts); the families a pipeline can split.
PIPELINE_MODELS: dict[str, Callable[[Any], Any]] = {
    "stacked_mlp": lambda model: pipeline_parts(model.config),
}
PIPELINE_METHODS = ("dfa", "bp")
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
  name = config.model.name
  if name not in PIPELINE_MODELS:
    raise ConfigError(f"dfax.train: mesh.stage={mesh.stage} needs a model family the pipeline "
                      f"can split ({', '.join(PIPELINE_MODELS)}), not {name!r}; set "
                      "--config.mesh.stage=1 or use configs/mnist_pipeline.py.")
  if mesh.model != 1:
    raise ConfigError(f"dfax.train: mesh.stage={mesh.stage} combines with mesh.data, not "
                      f"with mesh.model={mesh.model}; set --config.mesh.model=1.")
  if config.method not in PIPELINE_METHODS:
    raise ConfigError(f"dfax.train: method={config.method!r} has no pipeline; use one of "
                      f"{', '.join(PIPELINE_METHODS)} or --config.mesh.stage=1.")
  if config.model.num_stages != mesh.stage:
    raise ConfigError(f"dfax.train: mesh.stage={mesh.stage} but the model has "
                      f"model.num_stages={config.model.num_stages}; set "
                      f"--config.model.num_stages={mesh.stage}.")
  if config.method == "dfa" and config.dfa.feedback != PIPELINE_FEEDBACK:
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


def value_and_grad(config, model, projector: Callable | None) -> Callable[..., Any]:
  """``(params, x, y) -> (mean loss, grads)`` through the pipeline; linen params in and out.

  Args:
    config: a config that passed :func:`check_pipeline`.
    model: the linen model (its params are converted to the pipeline's layout).
    projector: the DFA projector (``None`` for backprop).

  Returns:
    The pipelined gradient function.
  """
  mesh = make_pipeline_mesh(config.mesh.stage, config.mesh.data)
  parts = PIPELINE_MODELS[config.model.name](model)
  micro = config.mesh.microbatches
  if projector is None:
    grad_fn = pipeline.backprop_pipeline(parts, mesh, micro)
  else:
    grad_fn = pipeline.dfa_pipeline(parts, mesh, micro, feedback.from_projector(projector))

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
