"""Training methods and DFA projectors, each one entry in one table.

A training method is a :class:`Method`: how it computes gradients, how it
wraps the optimizer, and whether it logs the alignment diagnostic. Projectors
are built from ``config.dfa.projector`` through :data:`PROJECTORS` (name ->
factory). Extend either by adding an entry.
"""

from __future__ import annotations

import dataclasses
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


# --- projectors: config.dfa.projector -> factory(config, key, step) -----------------------


def _sharing_options(config) -> dict:
  return {"tie_copies": config.dfa.tie_layers, "feature_ndim": config.dfa.feature_ndim or None}


def _opu(config, key, step):
  noise_key = jax.random.key(config.dfa.seed + 1)
  if step is not None:  # fresh noise per step, reproducible
    noise_key = jax.random.fold_in(noise_key, step)
  return opu.make_projector(opu.OPUConfig.from_dict(dict(config.dfa.opu)), key=key,
                            noise_key=noise_key)


PROJECTORS: dict[str, Callable[..., Any]] = {
    "gaussian": lambda c, key, step: dfax.projectors.gaussian(key, scale=c.dfa.scale,
                                                              **_sharing_options(c)),
    "uniform": lambda c, key, step: dfax.projectors.uniform(key, scale=c.dfa.scale,
                                                            **_sharing_options(c)),
    "hadamard": lambda c, key, step: dfax.projectors.hadamard(key, **_sharing_options(c)),
    "shared": lambda c, key, step: dfax.projectors.shared(key, scale=c.dfa.scale,
                                                          reuse=c.dfa.reuse, **_sharing_options(c)),
    "opu": _opu,
    "zeros": lambda c, key, step: dfax.projectors.zeros(),  # control: only the tail learns
    "identity": lambda c, key, step: dfax.projectors.identity(),  # control: the error itself
}
SHARING_PROJECTORS = ("gaussian", "uniform", "hadamard", "shared")  # take tie_layers, feature_ndim


def make_projector(config, step: jax.Array | None = None):
  """The DFA projector named by ``config.dfa.projector``.

  Args:
    config: the run config (``config.dfa``: projector, seed, scale, opu,
      tie_layers and feature_ndim, see ``dfax.projectors.dense``; reuse, see
      ``dfax.projectors.shared``).
    step: the train step, folded into the OPU's noise key; unused by the
      noiseless digital projectors.

  Returns:
    A projector ``(error, points) -> cotangents``.
  """
  kind = config.dfa.projector
  if kind not in PROJECTORS:
    raise ValueError(f"dfax.train: unknown config.dfa.projector {kind!r}; use one of "
                     f"{', '.join(PROJECTORS)}.")
  if config.dfa.reuse and kind != "shared":
    raise ValueError(f"dfax.train: config.dfa.reuse applies to the shared projector, not "
                     f"{kind!r}; set config.dfa.projector=shared or leave reuse=False.")
  if (config.dfa.tie_layers or config.dfa.feature_ndim) and kind not in SHARING_PROJECTORS:
    raise ValueError(f"dfax.train: config.dfa.tie_layers / feature_ndim apply to the "
                     f"{', '.join(SHARING_PROJECTORS)} projectors, not {kind!r}; set "
                     "config.dfa.projector=gaussian or leave tie_layers=False and feature_ndim=0.")
  return PROJECTORS[kind](config, jax.random.key(config.dfa.seed), step)


def feedback_presets() -> tuple[str, ...]:
  """The names ``config.dfa.feedback`` accepts besides '' (dfa_grad's default)."""
  return tuple(presets.PRESETS)


def make_feedback(config, model):
  """``feedback=`` for dfa_grad: config.dfa.feedback names a preset or is empty."""
  preset = config.dfa.feedback
  if not preset:
    return None
  if preset not in presets.PRESETS:
    raise ValueError(f"dfax.train: unknown config.dfa.feedback {preset!r}; use one of "
                     f"{', '.join(presets.PRESETS)}, or '' for dfa_grad's default.")
  return getattr(presets, preset)(model)


# --- methods ---------------------------------------------------------------------------------


def _dfa_grad(loss_fn, config, model, step):
  return dfax.dfa_value_and_grad(loss_fn, projector=make_projector(config, step),
                                 feedback=make_feedback(config, model))


def _bp_grad(loss_fn, config, model, step):
  del config, model, step
  return jax.value_and_grad(loss_fn)


@dataclasses.dataclass(frozen=True)
class Method:
  """A training method.

  Attributes:
    value_and_grad: ``(loss_fn, config, model, step) -> ((params, x, y) -> (loss, grads))``.
    wrap_optimizer: applied to the config's optimizer.
    logs_alignment: whether runs log the DFA/backprop alignment diagnostic.
  """

  value_and_grad: Callable[..., Callable[..., Any]]
  wrap_optimizer: Callable[[optax.GradientTransformation], optax.GradientTransformation] = (
      lambda opt: opt)
  logs_alignment: bool = False


METHODS: dict[str, Method] = {
    "dfa": Method(_dfa_grad, logs_alignment=True),
    "bp": Method(_bp_grad),
    # backprop gradients; everything but the last layer gets exactly zero update
    "shallow": Method(_bp_grad, wrap_optimizer=optim.train_last_layer_only),
}


def value_and_grad(method: str, loss_fn: Callable, config, model,
                   step: jax.Array | None = None) -> Callable[..., Any]:
  """``(params, x, y) -> (loss, grads)`` for the method named ``method``.

  With ``config.mesh.stage > 1`` the gradients come from the pipeline
  (``dfax.train.pipelined``), equal to the one-device method's.
  """
  if method not in METHODS:
    raise ValueError(f"dfax.train: unknown method {method!r}; use one of {', '.join(METHODS)}.")
  if pipelined.is_pipelined(config):
    projector = make_projector(config, step) if method == "dfa" else None
    return pipelined.value_and_grad(config, model, projector)
  return METHODS[method].value_and_grad(loss_fn, config, model, step)


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
                                 feedback=make_feedback(config, model))
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
