"""DFA for Flax NNX models: ``dfax.nnx.dfa_value_and_grad(loss_fn)(model, x, y)``.

Built on ``nnx.value_and_grad`` itself, so everything it does holds: the
gradient is the ``nnx.State`` of the model's ``nnx.Param`` variables, and
state the loss updates (BatchNorm statistics, Dropout's ``RngCount``, an
``nnx.Rngs`` passed as an argument) ends up on the caller's objects exactly as
with ``nnx.value_and_grad``.

NNX has no method interceptor. While the loss runs, dfax gives each module
of the *fresh copies* that ``nnx.value_and_grad`` hands the loss a routing
subclass of its own class (``obj.__class__``, restored before the call
returns); the user's objects and classes are never changed. Modules called
inside NNX transforms (``nnx.scan`` over an ``nnx.vmap``-built stack,
``nnx.remat``, ``nnx.vmap``) run on copies made inside the transform: their
candidate values leave the transform as NNX state (a private ``Variable``
type), stacked per layer as ``nnx.scan`` stacks any state, and become one
point per layer, as for linen's ``nn.scan``.
"""

from __future__ import annotations

import functools
import threading
import weakref
from typing import Any, Callable, Sequence

import jax
from flax import nnx

from dfax.core.outputs import OutputSelector
from dfax.core.points import IN_NNX_TRANSFORM
from dfax.core.projector import Projector
from dfax.core.cuts import cut_value
from dfax.core.outputs import map_float_leaves
from dfax.core.candidates import PointMeta
from dfax.core.recorder import Recorder
from dfax.core.selection import Selector
from dfax.core.transform import FrontEnd, value_and_grad_with

_ATTR = "_dfax_candidate_"


class FeedbackPoint(nnx.Module):
  """Identity marker for NNX models: under DFA, a cut goes here.

  Examples:
    >>> import jax.numpy as jnp, dfax.nnx
    >>> class Net(nnx.Module):
    ...   def __init__(self, rngs):
    ...     self.fc1, self.fc2 = nnx.Linear(4, 8, rngs=rngs), nnx.Linear(8, 2, rngs=rngs)
    ...     self.fb = dfax.nnx.FeedbackPoint()
    ...   def __call__(self, x):
    ...     return self.fc2(self.fb(nnx.tanh(self.fc1(x))))
    >>> loss_fn = lambda m, x: m(x).sum()
    >>> grads = dfax.nnx.dfa_grad(loss_fn, feedback=dfax.nnx.FeedbackPoint)(
    ...     Net(nnx.Rngs(0)), jnp.ones((3, 4)))
    >>> grads["fc1"]["kernel"][...].shape
    (4, 8)
  """

  def __call__(self, x):
    return x


DEFAULT_FEEDBACK: tuple[type, ...] = (
    nnx.Linear, nnx.LinearGeneral, nnx.Conv, nnx.ConvTranspose, FeedbackPoint)


class Candidate(nnx.Variable):
  """A value recorded inside an NNX transform, on its way out as state."""


_routing_classes: "weakref.WeakKeyDictionary[type, type]" = weakref.WeakKeyDictionary()
_local = threading.local()  # .stack: the _Routing of each trace running on this thread


def _stack() -> list:
  if not hasattr(_local, "stack"):
    _local.stack = []
  return _local.stack


def _has_call(cls: type) -> bool:
  return any("__call__" in c.__dict__ for c in cls.__mro__ if c not in (object, nnx.Module))


def _routing_class(cls: type) -> type:
  """A subclass of ``cls`` whose ``__call__`` reports to the active recorder."""
  sub = _routing_classes.get(cls)
  if sub is None:
    original = cls.__call__

    @functools.wraps(original)
    def __call__(self, *args, **kwargs):
      if not _stack():
        return original(self, *args, **kwargs)
      return _intercept(_stack()[-1], original, self, args, kwargs)

    sub = type(cls.__name__, (cls,), {"__call__": __call__, "__module__": cls.__module__,
                                      "__qualname__": cls.__qualname__})
    _routing_classes[cls] = sub
  return sub


def _intercept(routing, original, module, args, kwargs):
  recorder = routing.recorder
  next_fun = lambda *a, **k: original(module, *a, **k)
  path = routing.paths.get(id(module))
  if path is not None:
    return recorder.intercept(next_fun, args, kwargs, module, "__call__", path)
  # A copy made inside an NNX transform: cut here, send the value out as state.
  ins, outs = recorder.selection.match(module, ())
  if not (ins or outs):
    return next_fun(*args, **kwargs)
  recorder.count_module(module)
  if ins:
    args, kwargs = _cut_as_state(module, (args, kwargs), "in", ins + outs)
  out = next_fun(*args, **kwargs)
  if outs:
    out = _cut_as_state(module, out, "out", ins + outs)
  routing.pending.append(type(module).__name__)
  return out


def _cut_as_state(module, tree, side: str, entries: list):
  def cut(x, name):
    setattr(module, f"{_ATTR}{name}", Candidate(x, entries=tuple(entries), inner_ndim=x.ndim))
    return cut_value(x, f"{IN_NNX_TRANSFORM}{type(module).__name__}/{name}")

  return map_float_leaves(tree, side, cut)[0]


def _collect_candidates(models: Sequence[Any], recorder: Recorder, pending: list) -> list:
  """Takes the candidates that NNX transforms carried out; removes them."""
  found, seen, collected = [], set(), set()
  for model in models:
    for path, node in nnx.iter_graph(model):
      if not isinstance(node, nnx.Module) or id(node) in seen:
        continue
      seen.add(id(node))
      for attr in [a for a in vars(node) if a.startswith(_ATTR)]:
        var = getattr(node, attr)
        label = "/".join(str(p) for p in path) or type(node).__name__
        side = attr[len(_ATTR):]
        value = var.get_value()
        info = recorder.selected.setdefault(label, [type(node).__name__, set(), True])
        info[1].update(var.get_metadata()["entries"])
        stack = value.ndim - var.get_metadata()["inner_ndim"]
        pooled = max(recorder.selection.entries[i].pooled for i in var.get_metadata()["entries"])
        found.append((value, PointMeta(f"{label}/{side}", stack, (label,), pooled)))
        delattr(node, attr)
        collected.add(label)
  if collected:
    del pending[:]
  return found


class _Routing:
  """The NNX front end's route: gives the modules of ``models`` routing classes while the
  loss runs, and refuses a trace whose transform copies left candidates behind."""

  def __init__(self, models: Sequence[Any], recorder: Recorder):
    self.models, self.recorder = models, recorder
    self.paths: dict[int, tuple] = {}
    self.swapped: list = []
    self.pending: list[str] = []  # classes of transform copies whose candidates are not out

  def __enter__(self):
    for model in self.models:
      for path, node in nnx.iter_graph(model):
        if isinstance(node, nnx.Module) and id(node) not in self.paths:
          self.paths[id(node)] = tuple(str(p) for p in path)
          cls = type(node)
          if _has_call(cls) and cls not in _routing_classes.values():
            object.__setattr__(node, "__class__", _routing_class(cls))
            self.swapped.append((node, cls))
    _stack().append(self)
    self.recorder.extra_points = lambda: _collect_candidates(self.models, self.recorder,
                                                             self.pending)
    return self

  def __exit__(self, exc_type, *exc):
    _stack().pop()
    for node, cls in self.swapped:
      object.__setattr__(node, "__class__", cls)
    if exc_type is None and self.pending:
      raise ValueError(
          f"dfax.nnx: a {self.pending[0]} that feedback= selects ran on a module that "
          "is not part of the differentiated model's graph (created during the call, or "
          "returned by a transform that drops state). DFA cannot carry its feedback point "
          "out, and silently back-propagating through it would not be DFA. Create the "
          "module in __init__, or leave it out of feedback=.")


def _positions(argnums: int | nnx.DiffState | Sequence[int | nnx.DiffState]) -> list[int]:
  """The argument positions ``nnx.value_and_grad``'s ``argnums`` names."""
  nums = [argnums] if isinstance(argnums, (int, nnx.DiffState)) else list(argnums)
  return [n.argnum if isinstance(n, nnx.DiffState) else n for n in nums]


def _graph_args(args: Sequence[Any]) -> list:
  return [a for a in jax.tree_util.tree_leaves(args, is_leaf=lambda x: isinstance(
      x, nnx.Module)) if isinstance(a, nnx.Module)]


NNX = FrontEnd(
    api="dfax.nnx",
    route=lambda recorder, args, kwargs: _Routing(_graph_args((args, kwargs)), recorder),
    differentiate=lambda traced, argnums, has_aux, allow_int: nnx.value_and_grad(
        traced, argnums=argnums, has_aux=has_aux),
    positions=lambda argnums: _positions(argnums),
    no_module=("dfax.nnx: the loss function called no nnx.Module of its arguments; pass the "
               "model as an argument, as for nnx.grad."),
    default_feedback=DEFAULT_FEEDBACK, base=nnx.Module)


def dfa_value_and_grad(fun: Callable[..., Any], argnums: int | Sequence[int] = 0,
                       has_aux: bool = False, holomorphic: bool = False, *,
                       projector: Projector | None = None, feedback: Selector = None,
                       output: OutputSelector = None,
                       multiple_outputs: bool = False) -> Callable[..., Any]:
  """``nnx.value_and_grad`` with DFA; differentiated NNX modules give ``nnx.State``.

  Args:
    fun: loss function taking the model(s) like for ``nnx.value_and_grad``.
    argnums: as in ``nnx.value_and_grad`` (an int, a tuple, or
      ``nnx.DiffState``).
    has_aux: whether ``fun`` returns ``(loss, aux)``.
    holomorphic: refused, as for ``dfax.dfa_grad``.
    projector: as in ``dfax.dfa_grad``.
    feedback: ``nnx.Module`` class(es), a predicate ``(module, path) ->
      bool``, ``dfax.after(...)``, or a tuple of these; default in front of
      every nnx.Linear, LinearGeneral, Conv, ConvTranspose and
      ``dfax.nnx.FeedbackPoint``.
    output: as in ``dfax.dfa_grad``, for models returning pytrees.
    multiple_outputs: as in ``dfax.dfa_grad``: allow more than one
      top-level module call with feedback points, each an output.

  Returns:
    ``fn(*args) -> (value, grads)``, as ``nnx.value_and_grad`` returns them.
    The error is taken at the output of the top-level module call, as in
    ``dfax.dfa_grad``.

  Examples:
    >>> import jax.numpy as jnp, optax
    >>> from flax import nnx
    >>> import dfax.nnx
    >>> model = nnx.Sequential(nnx.Linear(4, 8, rngs=nnx.Rngs(0)), nnx.tanh,
    ...                        nnx.Linear(8, 2, rngs=nnx.Rngs(1)))
    >>> loss_fn = lambda m, x: m(x).sum()
    >>> loss, grads = dfax.nnx.dfa_value_and_grad(loss_fn)(model, jnp.ones((3, 4)))
    >>> sorted(grads["layers"].keys())
    [0, 2]
  """
  return value_and_grad_with(NNX, fun, argnums, has_aux, holomorphic, projector=projector,
                             feedback=feedback, output=output,
                             multiple_outputs=multiple_outputs)


def dfa_grad(fun: Callable[..., Any], argnums: int | Sequence[int] = 0, has_aux: bool = False,
             holomorphic: bool = False, *, projector: Projector | None = None,
             feedback: Selector = None, output: OutputSelector = None,
             multiple_outputs: bool = False) -> Callable[..., Any]:
  """``nnx.grad`` with DFA. See ``dfa_value_and_grad``.

  Examples:
    >>> import jax.numpy as jnp, dfax.nnx
    >>> model = nnx.Sequential(nnx.Linear(4, 8, rngs=nnx.Rngs(0)), nnx.tanh,
    ...                        nnx.Linear(8, 2, rngs=nnx.Rngs(1)))
    >>> loss_fn = lambda m, x: m(x).sum()
    >>> grads = dfax.nnx.dfa_grad(loss_fn)(model, jnp.ones((3, 4)))  # was: nnx.grad(loss_fn)
    >>> grads["layers"][0]["kernel"][...].shape
    (4, 8)
  """
  value_and_grad_fn = dfa_value_and_grad(fun, argnums, has_aux, holomorphic,
                                         projector=projector, feedback=feedback,
                                         output=output, multiple_outputs=multiple_outputs)

  @functools.wraps(fun)
  def grad_fn(*args, **kwargs):
    value, grads = value_and_grad_fn(*args, **kwargs)
    return (grads, value[1]) if has_aux else grads

  return grad_fn
