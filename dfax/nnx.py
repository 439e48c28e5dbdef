"""DFA for Flax NNX models: ``dfax.nnx.dfa_grad(loss_fn)(model, x, y)``.

NNX has no method interceptor, so dfax makes one for the duration of a trace:
the model is split into (graphdef, params, rest) and merged again inside the
differentiated function, exactly as ``nnx.grad`` does; while the loss runs,
``__call__`` of each module class found in that *fresh copy* of the model is
routed through the same recorder as for linen. The user's model object and its
classes are untouched outside the trace.

Trade-off (documented in the README): only ``__call__`` of modules reachable
from the differentiated model is visible (a feedback point in a module created
inside ``__call__`` is not), the class patch is process-wide for the length of
one trace (do not trace the same classes from two threads at once), and NNX
transforms (``nnx.scan``) inside the model are not supported: a selected module
called inside one raises an error naming the alternatives (linen's
``nn.scan``, a Python loop).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import jax
from flax import nnx
from jax._src import core as jax_core

from dfax.core.recorder import Recorder
from dfax.core.selection import make_selector
from dfax.core.transform import _check_argnums, _check_loss, _default_projector
from dfax.core.tap import Projector


class FeedbackPoint(nnx.Module):
  """Identity marker for NNX models: under DFA, a cut goes here.

  Example::

    self.fb = dfax.nnx.FeedbackPoint()
    ...
    x = self.fb(x)
  """

  def __call__(self, x):
    return x


DEFAULT_FEEDBACK: tuple[type, ...] = (
    nnx.Linear, nnx.LinearGeneral, nnx.Conv, nnx.ConvTranspose, FeedbackPoint)


def _make_selector(feedback) -> Callable[[Any, tuple], bool]:
  return make_selector(feedback, default=DEFAULT_FEEDBACK, base=nnx.Module)


def _selects_without_path(selector, module) -> bool:
  """Whether ``selector`` picks ``module`` when its path is unknown (best effort)."""
  try:
    return bool(selector(module, ()))
  except Exception:  # noqa: BLE001 - a user predicate may index the path
    return False


class _patched_calls:
  """Routes ``__call__`` of the modules in ``models`` through ``recorder``."""

  def __init__(self, models: Sequence[nnx.Module], recorder: Recorder):
    self.paths = {}
    for model in models:
      for path, node in nnx.iter_graph(model):
        if isinstance(node, nnx.Module):
          self.paths.setdefault(id(node), tuple(str(p) for p in path))
    self.recorder = recorder
    self.originals: dict[type, Any] = {}
    self.classes = {type(node) for model in models for _, node in nnx.iter_graph(model)
                    if isinstance(node, nnx.Module)}

  def __enter__(self):
    for cls in self.classes:
      owner = next(c for c in cls.__mro__ if "__call__" in c.__dict__)
      if owner in self.originals:
        continue
      self.originals[owner] = owner.__dict__["__call__"]
      owner.__call__ = self._route(self.originals[owner])
    return self

  def __exit__(self, *exc):
    for owner, original in self.originals.items():
      owner.__call__ = original

  def _route(self, original):
    paths, recorder = self.paths, self.recorder

    @functools.wraps(original)
    def call(module, *args, **kwargs):
      path = paths.get(id(module))
      if path is None:
        if _selects_without_path(recorder.selector, module):
          raise ValueError(
              f"dfax.nnx: a {type(module).__name__} that feedback= selects was called on a "
              "copy that is not part of the differentiated model's graph, as happens inside "
              "nnx.scan / nnx.vmap bodies or for modules created during the call. DFA cannot "
              "place a cut there, and silently back-propagating through it would not be DFA. "
              "Use flax.linen's nn.scan (supported), call the layers in a Python loop, or "
              "select only modules called directly (feedback=).")
        return original(module, *args, **kwargs)
      next_fun = lambda *a, **k: original(module, *a, **k)
      return recorder.intercept(next_fun, args, kwargs, module, "__call__", path)

    return call


def dfa_value_and_grad(fun: Callable[..., Any], argnums: int | Sequence[int] = 0,
                       has_aux: bool = False, *, projector: Projector | None = None,
                       feedback=None) -> Callable[..., Any]:
  """``nnx.value_and_grad`` with DFA; differentiated NNX modules give ``nnx.State``.

  Args:
    fun: loss function taking the model(s) like for ``nnx.grad``.
    argnums, has_aux: as in ``nnx.value_and_grad`` (int or tuple).
    projector: as in ``dfax.dfa_grad``.
    feedback: nnx.Module class(es) or predicate ``(module, path) -> bool``;
      default every nnx.Linear, LinearGeneral, Conv, ConvTranspose and
      ``dfax.nnx.FeedbackPoint``.

  Returns:
    ``fn(*args) -> (value, grads)``; grads of a module argument are the
    ``nnx.State`` of its ``nnx.Param`` variables, as ``nnx.grad`` returns.

  Example::

    loss, grads = dfax.nnx.dfa_value_and_grad(loss_fn)(model, x, y)
    optimizer.update(model, grads)
  """
  selector = _make_selector(feedback)
  projector = projector if projector is not None else _default_projector()
  nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)

  @functools.wraps(fun)
  def value_and_grad_fn(*args):
    _check_argnums(argnums, len(args))
    split = {}
    for i in nums:
      if isinstance(args[i], nnx.Module):
        split[i] = nnx.split(args[i], nnx.Param, ...)

    def pure(*diff):
      call_args = list(args)
      for i, value in zip(nums, diff):
        call_args[i] = nnx.merge(split[i][0], value, split[i][2]) if i in split else value
      models = [call_args[i] for i in split]
      recorder = Recorder(selector, projector, jax_core.trace_ctx.trace)
      with _patched_calls(models, recorder):
        out = fun(*call_args)
      _check_loss(out, has_aux)
      if recorder.num_selected == 0:
        seen = ", ".join(sorted(recorder.modules_seen)) or "none"
        raise ValueError(f"dfax.nnx: no feedback points found (modules called: {seen}). "
                         "Select some with feedback=: an nnx.Module class, a tuple of "
                         "classes or a predicate (module, path) -> bool, or place "
                         "dfax.nnx.FeedbackPoint() markers.")
      return out

    diff_args = [split[i][1] if i in split else args[i] for i in nums]
    value, grads = jax.value_and_grad(pure, tuple(range(len(nums))), has_aux)(*diff_args)
    return value, (grads[0] if isinstance(argnums, int) else grads)

  return value_and_grad_fn


def dfa_grad(fun: Callable[..., Any], argnums: int | Sequence[int] = 0, has_aux: bool = False,
             *, projector: Projector | None = None, feedback=None) -> Callable[..., Any]:
  """``nnx.grad`` with DFA. See ``dfa_value_and_grad``.

  Example::

    grads = dfax.nnx.dfa_grad(loss_fn)(model, x, y)   # was: nnx.grad(loss_fn)
  """
  value_and_grad_fn = dfa_value_and_grad(fun, argnums, has_aux, projector=projector,
                                         feedback=feedback)

  @functools.wraps(fun)
  def grad_fn(*args):
    value, grads = value_and_grad_fn(*args)
    return (grads, value[1]) if has_aux else grads

  return grad_fn
