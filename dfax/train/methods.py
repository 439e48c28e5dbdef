"""Training methods and DFA projectors: one record each, in :data:`METHODS` and :data:`PROJECTORS`.

A :class:`Method` says how a method computes gradients, wraps the optimizer,
whether it reads the feedback config (and so logs alignment) and how it runs
in a pipeline. A :class:`ProjectorKind` says how ``config.dfa.projector``
builds a projector and which ``config.dfa`` options it reads. Validation,
building, ``--help`` and the docs read these records; extend either by adding
one.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

import dfax
from dfax import opu
from dfax.models import presets
from dfax.train import optim, pipelined


def cross_entropy(logits: jax.Array, labels: jax.Array, reduce: Callable = jnp.mean) -> jax.Array:
  """Softmax cross-entropy over the last axis with integer labels, reduced by ``reduce``.

  Examples:
    >>> float(cross_entropy(jnp.zeros((2, 4)), jnp.array([0, 3])))  # log(4)
    1.3862943649291992
  """
  return reduce(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


# --- projectors ------------------------------------------------------------------------------

# The config.dfa fields that only some projectors read (the rest: projector, seed, feedback).
PROJECTOR_OPTIONS = ("scale", "tie_copies", "feature_ndim", "reuse", "opu")


def _layout(c) -> dict:
  return {"tie_copies": c.dfa.tie_copies, "feature_ndim": c.dfa.feature_ndim or None}


def _opu(c, key, step):
  noise_key = jax.random.key(c.dfa.seed + 1)
  if step is not None:  # fresh noise per step, reproducible
    noise_key = jax.random.fold_in(noise_key, step)
  return opu.make_projector(opu.OPUConfig.from_dict(dict(c.dfa.opu)), key=key,
                            noise_key=noise_key, **_layout(c))


@dataclasses.dataclass(frozen=True)
class ProjectorKind:
  """A projector the CLI can build (``config.dfa.projector``).

  Attributes:
    name: the value of ``config.dfa.projector``.
    make: ``(config, key, step) -> projector``; ``step`` (the train step, or
      ``None``) only matters to a noisy device.
    options: the :data:`PROJECTOR_OPTIONS` it reads; setting another one
      away from its default is refused.
    help: one line for ``--help`` and the docs.
  """

  name: str
  make: Callable[[Any, jax.Array, jax.Array | None], Any]
  options: tuple[str, ...]
  help: str


PROJECTORS: dict[str, ProjectorKind] = {p.name: p for p in (
    ProjectorKind("gaussian", lambda c, key, step: dfax.projectors.gaussian(
        key, scale=c.dfa.scale, **_layout(c)), ("scale", "tie_copies", "feature_ndim"),
        "an independent Gaussian matrix per point"),
    ProjectorKind("uniform", lambda c, key, step: dfax.projectors.uniform(
        key, scale=c.dfa.scale, **_layout(c)), ("scale", "tie_copies", "feature_ndim"),
        "an independent uniform matrix per point"),
    ProjectorKind("hadamard", lambda c, key, step: dfax.projectors.hadamard(
        key, scale=c.dfa.scale, **_layout(c)), ("scale", "tie_copies", "feature_ndim"),
        "a keyed randomized Hadamard transform per point, O(n log n)"),
    ProjectorKind("shared", lambda c, key, step: dfax.projectors.shared(
        key, scale=c.dfa.scale, reuse=c.dfa.reuse, **_layout(c)),
        ("scale", "tie_copies", "feature_ndim", "reuse"),
        "one Gaussian matrix sliced across the points (an optical device's layout)"),
    ProjectorKind("opu", _opu, ("opu", "tie_copies", "feature_ndim"),
                  "the simulated optical processing unit (config.dfa.opu)"),
    ProjectorKind("zeros", lambda c, key, step: dfax.projectors.zeros(), (),
                  "control: no feedback, only the segment after the last cut learns"),
    ProjectorKind("identity", lambda c, key, step: dfax.projectors.identity(), (),
                  "control: each point receives the error itself"),
)}


@functools.cache
def _option_defaults() -> dict[str, Any]:  # read-only: callers compare against it
  from dfax.train.config_schema import default_config  # noqa: PLC0415
  dfa = default_config().dfa
  return {name: dfa[name].to_dict() if name == "opu" else dfa[name]
          for name in PROJECTOR_OPTIONS}


def check_projector_options(config) -> None:
  """Refuses a ``config.dfa`` option the chosen projector would ignore.

  Raises:
    ValueError: naming the option, the projectors that read it, and the fix.
  """
  kind = PROJECTORS[config.dfa.projector]
  for name, default in _option_defaults().items():
    value = config.dfa[name].to_dict() if name == "opu" else config.dfa[name]
    if name not in kind.options and value != default:
      readers = [p.name for p in PROJECTORS.values() if name in p.options]
      raise ValueError(
          f"dfax.train: config.dfa.{name} applies to the {', '.join(readers)} projector(s), "
          f"not {kind.name!r}; set --config.dfa.projector={readers[0]} or leave "
          f"config.dfa.{name} at its default ({default!r}).")


def make_projector(config, step: jax.Array | None = None):
  """The DFA projector named by ``config.dfa.projector`` (a :class:`ProjectorKind`).

  Args:
    config: the run config (``config.dfa``: projector, seed, and the options
      the projector reads, see :data:`PROJECTORS`).
    step: the train step, folded into the OPU's noise key; unused by the
      noiseless digital projectors.

  Returns:
    A projector ``(error, points) -> cotangents``.

  Raises:
    ValueError: for an unknown projector or an option it does not read.
  """
  if config.dfa.projector not in PROJECTORS:
    raise ValueError(f"dfax.train: unknown config.dfa.projector {config.dfa.projector!r}; use "
                     f"one of {', '.join(PROJECTORS)}.")
  check_projector_options(config)
  kind = PROJECTORS[config.dfa.projector]
  return kind.make(config, jax.random.key(config.dfa.seed), step)


def make_feedback(config):
  """``feedback=`` for dfa_grad: config.dfa.feedback names a preset or is empty."""
  name = config.dfa.feedback
  if not name:
    return None
  if name not in presets.PRESETS:
    raise ValueError(f"dfax.train: unknown config.dfa.feedback {name!r}; use one of "
                     f"{', '.join(presets.PRESETS)}, or '' for dfa_grad's default.")
  return presets.PRESETS[name]()


# --- methods ---------------------------------------------------------------------------------


def _dfa_grad(loss_fn, config, model, step):
  return dfax.dfa_value_and_grad(loss_fn, projector=make_projector(config, step),
                                 feedback=make_feedback(config))


def _bp_grad(loss_fn, config, model, step):
  del config, model, step
  return jax.value_and_grad(loss_fn)


def _dfa_pipeline(parts, mesh, microbatches, config, step):
  from dfax.parallel import feedback, pipeline  # noqa: PLC0415
  return pipeline.dfa_pipeline(parts, mesh, microbatches,
                               feedback.from_projector(make_projector(config, step)))


def _bp_pipeline(parts, mesh, microbatches, config, step):
  from dfax.parallel import pipeline  # noqa: PLC0415
  del config, step
  return pipeline.backprop_pipeline(parts, mesh, microbatches)


@dataclasses.dataclass(frozen=True)
class Method:
  """A training method (``config.method``).

  Attributes:
    name: the value of ``config.method``.
    help: one line for ``--help`` and the docs.
    value_and_grad: ``(loss_fn, config, model, step) -> ((params, x, y) -> (loss, grads))``.
    wrap_optimizer: applied to the config's optimizer.
    uses_feedback: whether it reads ``config.dfa`` (projector, feedback):
      such a method logs the alignment of its gradients with backprop's,
      and reports the simulated OPU's cost.
    pipeline: ``(parts, mesh, microbatches, config, step) -> grad_fn`` over a
      ``dfax.parallel`` pipeline, or ``None`` if the method has no pipeline.
  """

  name: str
  help: str
  value_and_grad: Callable[..., Callable[..., Any]]
  wrap_optimizer: Callable[[optax.GradientTransformation], optax.GradientTransformation] = (
      lambda opt: opt)
  uses_feedback: bool = False
  pipeline: Callable[..., Callable[..., Any]] | None = None

  @property
  def logs_alignment(self) -> bool:
    return self.uses_feedback


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("dfa", "Direct Feedback Alignment (dfax.dfa_value_and_grad)", _dfa_grad,
           uses_feedback=True, pipeline=_dfa_pipeline),
    Method("bp", "backprop (jax.value_and_grad)", _bp_grad, pipeline=_bp_pipeline),
    Method("shallow", "control: backprop gradients, only the last layer is updated",
           _bp_grad, wrap_optimizer=optim.train_last_layer_only),
)}


def get(name: str) -> Method:
  """The method named ``name``; ``ValueError`` naming the known ones otherwise."""
  if name not in METHODS:
    raise ValueError(f"dfax.train: unknown method {name!r}; use one of {', '.join(METHODS)}.")
  return METHODS[name]


def value_and_grad(method: str, loss_fn: Callable, config, model,
                   step: jax.Array | None = None) -> Callable[..., Any]:
  """``(params, x, y) -> (loss, grads)`` for the method named ``method``.

  With ``config.mesh.stage > 1`` the gradients come from the pipeline
  (``dfax.train.pipelined``), equal to the one-device method's.
  """
  record = get(method)
  if pipelined.is_pipelined(config):
    return pipelined.value_and_grad(config, model, record, step)
  return record.value_and_grad(loss_fn, config, model, step)


# --- the simulated OPU's cost ------------------------------------------------------------------


def feedback_points(loss_fn: Callable, config, model, params, x, y):
  """The feedback points DFA uses for this model and batch, from an abstract trace.

  Returns:
    ``(points, error_shape)``; nothing is computed (``jax.eval_shape``).
  """
  seen = {}

  def capture(error, points):
    seen["points"], seen["error_shape"] = list(points), tuple(error.shape)
    return dfax.projectors.zeros()(error, points)

  grad = dfax.dfa_value_and_grad(loss_fn, projector=capture,
                                 feedback=make_feedback(config))
  jax.eval_shape(grad, params, x, y)
  return seen.get("points", []), seen.get("error_shape", ())


def opu_cost(loss_fn: Callable, config, model, params, x, y) -> dict:
  """The simulated OPU's cost model for one step of this run (frames, time, energy)."""
  points, error_shape = feedback_points(loss_fn, config, model, params, x, y)
  if not points:
    return {}
  n_lead = len(error_shape) - 1
  width = sum(p.feature_size(n_lead) * p.num_copies for p in points)
  vectors = math.prod(error_shape[:-1])
  cost = opu.estimate_cost(vectors, error_shape[-1], width,
                           opu.OPUConfig.from_dict(dict(config.dfa.opu)))
  return {"vectors": vectors, "n_out": error_shape[-1], "width": width, **cost.as_dict()}
