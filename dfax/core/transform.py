"""``dfa_grad`` and ``dfa_value_and_grad``: jax.grad with DFA at feedback points."""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
from jax._src import core as jax_core
from flax import linen as nn

from dfax.core import lifted
from dfax.core.recorder import Recorder
from dfax.core.selection import Selector, make_selector
from dfax.core.tap import Projector

_DEFAULT_SEED = 0


def _default_projector() -> Projector:
  from dfax.projectors.dense import gaussian  # the core only needs the protocol
  return gaussian(jax.random.key(_DEFAULT_SEED))


def _check_argnums(argnums: int | Sequence[int], num_args: int) -> None:
  nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
  for n in nums:
    if not -num_args <= n < num_args:
      raise ValueError(
          f"dfax: argnums={argnums!r} but the function was called with "
          f"{num_args} positional arguments.")


def _check_loss(out: Any, has_aux: bool) -> None:
  if has_aux and not (isinstance(out, (tuple, list)) and len(out) == 2):
    raise TypeError(
        "dfax: has_aux=True needs the loss function to return a pair "
        f"(loss, aux); it returned {type(out).__name__}.")
  loss = out[0] if has_aux else out
  shape = jnp.shape(loss)
  if shape != ():
    raise TypeError(
        f"dfax: the loss function must return a scalar, got shape {shape}. "
        "Reduce it (e.g. loss.mean()), or return (loss, aux) with has_aux=True.")


def _check_found(recorder: Recorder) -> None:
  if not recorder.modules_seen:
    raise ValueError(
        "dfax: the loss function called no Flax linen module, so there is no "
        "model output to take the error from. Call model.apply(params, ...) "
        "inside the loss function (for flax.nnx models use dfax.nnx).")
  if recorder.num_selected == 0:
    seen = ", ".join(f"{k} x{v}" for k, v in sorted(recorder.modules_seen.items()))
    raise ValueError(
        f"dfax: no feedback points found. Modules called: {seen}. Select some "
        "with feedback=: a module class (feedback=nn.Dense, or your Block "
        "class), a tuple of classes, a predicate (module, path) -> bool "
        "(e.g. dfax.by_name('*/mlp')), or place dfax.FeedbackPoint() markers "
        "in the model.")


def dfa_value_and_grad(
    fun: Callable[..., Any],
    argnums: int | Sequence[int] = 0,
    has_aux: bool = False,
    *,
    projector: Projector | None = None,
    feedback: Selector | None = None,
) -> Callable[..., Any]:
  """Like ``jax.value_and_grad``, with DFA gradients for hidden segments.

  The loss function is an ordinary one that calls ``model.apply(...)`` of an
  unmodified Flax linen model. A cut is placed in front of every selected
  module; the segment after the last cut gets the true output error; the
  value at each cut gets ``projector(error, points)[k]`` as cotangent, which
  back-propagates only down to the previous cut.

  Args:
    fun: loss function, ``fun(*args) -> loss`` or ``-> (loss, aux)``.
    argnums: which positional argument(s) to differentiate, as in jax.grad.
    has_aux: whether ``fun`` returns ``(loss, aux)``.
    projector: ``projector(error, points) -> cotangents``; default
      ``dfax.projectors.gaussian(jax.random.key(0))``.
    feedback: where to cut: a Module class, tuple of classes or predicate
      ``(module, path) -> bool``; default every Dense, DenseGeneral, Conv,
      ConvTranspose and ``dfax.FeedbackPoint``.

  Returns:
    A function with the signature of ``fun`` returning ``(value, grads)``,
    with ``value`` and ``grads`` structured exactly as by jax.value_and_grad.

  Example::

    loss, grads = dfax.dfa_value_and_grad(loss_fn)(params, batch)
  """
  selector = make_selector(feedback)
  projector = projector if projector is not None else _default_projector()

  @functools.wraps(fun)
  def value_and_grad_fn(*args, **kwargs):
    _check_argnums(argnums, len(args))

    def traced(*args, **kwargs):
      recorder = Recorder(selector, projector, jax_core.trace_ctx.trace)
      lifted.prepare_lifted_classes()
      with lifted.activate(recorder), nn.intercept_methods(recorder):
        out = fun(*args, **kwargs)
      _check_loss(out, has_aux)
      _check_found(recorder)
      return out

    return jax.value_and_grad(traced, argnums, has_aux)(*args, **kwargs)

  return value_and_grad_fn


def dfa_grad(
    fun: Callable[..., Any],
    argnums: int | Sequence[int] = 0,
    has_aux: bool = False,
    *,
    projector: Projector | None = None,
    feedback: Selector | None = None,
) -> Callable[..., Any]:
  """Like ``jax.grad``, with DFA gradients for hidden segments.

  Args: as ``dfa_value_and_grad``.

  Returns:
    A function returning the gradients (``(grads, aux)`` with has_aux).

  Example::

    grads = dfax.dfa_grad(loss_fn)(params, x, y)   # was: jax.grad(loss_fn)
    updates, opt_state = optimizer.update(grads, opt_state, params)
  """
  value_and_grad_fn = dfa_value_and_grad(
      fun, argnums, has_aux, projector=projector, feedback=feedback)

  @functools.wraps(fun)
  def grad_fn(*args, **kwargs):
    value, grads = value_and_grad_fn(*args, **kwargs)
    return (grads, value[1]) if has_aux else grads

  return grad_fn
