"""The three training methods: DFA, backprop, and the shallow (last layer) baseline."""

from __future__ import annotations

from typing import Any, Callable

import jax
import optax

import dfax

METHODS = ("dfa", "bp", "shallow")


def make_projector(config, step: jax.Array | None = None):
  """The DFA projector named by ``config.dfa.projector``.

  Args:
    config: the run config (``config.dfa``: projector, seed, scale, opu,
      tie_layers and feature_ndim; see ``dfax.projectors.dense``).
    step: the train step, folded into the OPU's noise key (fresh noise per
      step, reproducible); unused by the noiseless digital projectors.
  """
  kind, key = config.dfa.projector, jax.random.key(config.dfa.seed)
  tie, feature_ndim = config.dfa.get("tie_layers", False), config.dfa.get("feature_ndim", 0)
  if (tie or feature_ndim) and kind not in ("gaussian", "uniform", "hadamard"):
    raise ValueError(f"dfax.train: config.dfa.tie_layers / feature_ndim apply to the gaussian, "
                     f"uniform and hadamard projectors, not {kind!r}; set "
                     "config.dfa.projector=gaussian or leave tie_layers=False and feature_ndim=0.")
  per_point = {"tie_copies": tie, "feature_ndim": feature_ndim or None}
  if kind in ("gaussian", "uniform"):
    return getattr(dfax.projectors, kind)(key, scale=config.dfa.scale, **per_point)
  if kind == "zeros":  # the control: only the segment after the last cut learns
    return dfax.projectors.zeros()
  if kind == "identity":  # the control: the error itself, fixed but not random
    return dfax.projectors.identity()
  if kind == "shared":
    return dfax.projectors.shared(key, scale=config.dfa.scale)
  if kind == "hadamard":
    return dfax.projectors.hadamard(key, **per_point)
  if kind == "opu":
    try:
      from dfax import opu  # noqa: PLC0415
    except ImportError as e:  # pragma: no cover - the simulator ships with dfax
      raise ValueError("dfax.train: config.dfa.projector='opu' needs dfax.opu") from e
    noise_key = jax.random.key(config.dfa.seed + 1)
    if step is not None:
      noise_key = jax.random.fold_in(noise_key, step)
    return opu.make_projector(opu.OPUConfig.from_dict(dict(config.dfa.opu)), key=key,
                              noise_key=noise_key)
  raise ValueError(f"dfax.train: unknown config.dfa.projector {kind!r}; use gaussian, "
                   "uniform, shared, hadamard, opu, zeros or identity.")


def make_feedback(config, model):
  """``feedback=`` for dfa_grad: config.dfa.feedback names a preset or is empty."""
  preset = config.dfa.get("feedback", "")
  if not preset:
    return None
  from dfax.models import presets  # noqa: PLC0415
  if preset not in presets.PRESETS:
    raise ValueError(f"dfax.train: unknown config.dfa.feedback {preset!r}; use one of "
                     f"{', '.join(presets.PRESETS)}, or '' for dfa_grad's default.")
  return getattr(presets, preset)(model)


def value_and_grad(method: str, loss_fn: Callable, config, model,
                   step: jax.Array | None = None) -> Callable[..., Any]:
  """``(params, x, y) -> (loss, grads)`` for a method.

  ``shallow`` computes backprop gradients; the optimizer (see optim.py) then
  freezes everything but the last layer, so those layers get exactly no update.
  """
  if method == "dfa":
    return dfax.dfa_value_and_grad(loss_fn, projector=make_projector(config, step),
                                   feedback=make_feedback(config, model))
  if method in ("bp", "shallow"):
    return jax.value_and_grad(loss_fn)
  raise ValueError(f"dfax.train: unknown method {method!r}; use one of {METHODS}.")


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


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
  import math  # noqa: PLC0415
  from dfax import opu  # noqa: PLC0415
  points, error_shape = feedback_points(loss_fn, config, model, params, x, y)
  if not points:
    return {}
  n_lead = len(error_shape) - 1
  width = sum(p.feature_size(n_lead) * p.num_copies for p in points)
  vectors = math.prod(error_shape[:-1])
  cost = opu.estimate_cost(vectors, error_shape[-1], width,
                           opu.OPUConfig.from_dict(dict(config.dfa.opu)))
  return {"vectors": vectors, "n_out": error_shape[-1], "width": width, **cost.as_dict()}
