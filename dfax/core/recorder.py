"""Cuts feedback points while a loss function runs, and taps the output.

A ``Recorder`` is installed with ``flax.linen.intercept_methods`` for one
trace of the loss function. For every selected module call it cuts the
module's floating-point inputs (the module sees ``stop_gradient(x)``) and
remembers ``x``. When the outermost module call returns, its output ``y`` is
passed through the tap (see ``tap.py``) together with every remembered value.

Flax lifted transforms (``nn.scan``, ``nn.remat``, ``nn.jit``, ``nn.vmap``)
trace their body in a separate JAX trace, so values remembered inside cannot
be used outside. The recorder therefore opens a new frame for each lifted
body and returns the body's remembered values as extra outputs of the body;
``nn.scan`` stacks them per layer like any other scanned output. Outside, the
extra outputs are stripped again and become stacked feedback points.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax._src import core as jax_core  # trace identity: which values depend on params
from flax import linen as nn
from flax.core.scope import Scope

from dfax.core.points import PointSpec
from dfax.core.tap import make_tap, value_vma

@jax.tree_util.register_pytree_node_class
class _WithPoints:
  """A lifted body's output plus the feedback values recorded inside it."""

  def __init__(self, output, values, meta):
    self.output, self.values, self.meta = output, values, meta

  def tree_flatten(self):
    return (self.output, self.values), self.meta

  @classmethod
  def tree_unflatten(cls, meta, children):
    return cls(children[0], children[1], meta)


@dataclasses.dataclass
class _Frame:
  values: list = dataclasses.field(default_factory=list)
  meta: list = dataclasses.field(default_factory=list)  # (path, stack_ndim)
  cut_of: dict = dataclasses.field(default_factory=dict)  # id(x) -> (x, cut)
  cut_ids: set = dataclasses.field(default_factory=set)
  lifted: bool = False


@dataclasses.dataclass
class _Lift:
  kind: str  # "scan", "vmap" or "other"
  out_axes: Any
  active: bool = False


def _is_body_root(module: nn.Module) -> bool:
  """The clone a lifted transform binds to fresh scopes to run its body."""
  return isinstance(module.parent, Scope) and type(module.parent).__name__ != "TestScope"


def _is_float_array(x) -> bool:
  return isinstance(x, (jax.Array, jax_core.Tracer)) and jnp.issubdtype(
      jnp.result_type(x), jnp.inexact)


class Recorder:
  """Method interceptor that turns selected module inputs into DFA cuts.

  Args:
    selector: ``(module, path) -> bool``, whether to cut in front of a call.
    projector: the projector the output tap uses.
    diff_trace: the JAX trace of the differentiated arguments; values that
      are not tracers of it (or of a trace nested inside it) do not depend on
      them and are not projected to.
  """

  def __init__(self, selector: Callable[[nn.Module, tuple], bool],
               projector: Callable, diff_trace: Any):
    self.selector = selector
    self.projector = projector
    self.diff_trace = diff_trace
    self.frames: list[_Frame] = []
    self.lifts: list[_Lift] = []
    self.modules_seen: dict[str, int] = {}
    self.num_selected = 0
    self.num_taps = 0
    self.specs: list[PointSpec] = []

  # -- dependency on the differentiated arguments ---------------------------
  def depends(self, x) -> bool:
    if not isinstance(x, jax_core.Tracer):
      return False
    trace = getattr(x, "_trace", None)
    if trace is None or self.diff_trace is None:
      return True
    while trace is not None:
      if trace is self.diff_trace:
        return True
      trace = getattr(trace, "parent_trace", None)
    return False

  # -- the interceptor -------------------------------------------------------
  def __call__(self, next_fun, args, kwargs, context):
    """``flax.linen.intercept_methods`` entry point."""
    module, method = context.module, context.method_name
    if method in ("setup", "<lambda>"):  # Flax's own abstract checks
      return next_fun(*args, **kwargs)
    return self.intercept(next_fun, args, kwargs, module, method, tuple(module.path),
                          body_root=_is_body_root(module))

  def intercept(self, next_fun, args, kwargs, module, method: str, path: tuple,
                body_root: bool = False):
    """Runs one module method call, cutting its inputs if it is selected.

    Args:
      next_fun: calls the method with (possibly cut) ``*args, **kwargs``.
      module: the module instance (linen or nnx).
      method: the method's name; only ``__call__`` can be selected.
      path: the module's path, e.g. ``("block_0", "mlp")``.
      body_root: whether this call runs the body of a lifted transform.
    """
    name = type(module).__name__
    self.modules_seen[name] = self.modules_seen.get(name, 0) + 1
    select = method == "__call__" and self.selector(module, path)
    if not self.frames:
      return self._run_top(next_fun, module, path, args, kwargs, select)
    if self.lifts and not self.lifts[-1].active and body_root:
      return self._run_lifted_body(next_fun, path, args, kwargs, select, module)
    if select:
      args, kwargs = self._cut_inputs(path, module, args, kwargs)
    return next_fun(*args, **kwargs)

  # -- frames ----------------------------------------------------------------
  def _run_in_frame(self, frame, next_fun, path, module, args, kwargs, select):
    self.frames.append(frame)
    try:
      if select:
        args, kwargs = self._cut_inputs(path, module, args, kwargs)
      return next_fun(*args, **kwargs)
    finally:
      self.frames.pop()

  def _run_top(self, next_fun, module, path, args, kwargs, select):
    frame = _Frame()
    out = self._run_in_frame(frame, next_fun, path, module, args, kwargs, select)
    return self._tap(out, frame, module)

  def _run_lifted_body(self, next_fun, path, args, kwargs, select, module=None):
    lift = self.lifts[-1]
    frame = _Frame(lifted=True)
    lift.active = True
    try:
      out = self._run_in_frame(frame, next_fun, path, module, args, kwargs, select)
    finally:
      lift.active = False
    if not frame.values:
      return out
    meta = tuple(frame.meta)
    if lift.kind == "scan":
      carry, ys = out
      return carry, _WithPoints(ys, tuple(frame.values), meta)
    return _WithPoints(out, tuple(frame.values), meta)

  def run_lifted(self, call, args, kwargs, kind: str, out_axes: Any):
    """Runs the outer call of a lifted class; strips what its body recorded."""
    if self.lifts and not self.lifts[-1].active:
      # This lifted call is itself the body of an enclosing lift
      # (nn.scan(nn.remat(Block))): open that body's frame around it.
      inner = lambda *a, **k: self._lifted_call(call, a, k, kind, out_axes)
      return self._run_lifted_body(inner, (), args, kwargs, select=False)
    return self._lifted_call(call, args, kwargs, kind, out_axes)

  def _lifted_call(self, call, args, kwargs, kind: str, out_axes: Any):
    lift = _Lift(kind=kind, out_axes=out_axes)
    self.lifts.append(lift)
    try:
      out = call(*args, **kwargs)
    finally:
      self.lifts.pop()
    return self._strip_lifted(out, lift)

  def _strip_lifted(self, out, lift: _Lift):
    if lift.kind == "scan":
      if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], _WithPoints)):
        return out
      carry, packed = out
      stripped = (carry, packed.output)
    elif isinstance(out, _WithPoints):
      packed, stripped = out, out.output
    else:
      return out
    extra = 1 if lift.kind in ("scan", "vmap") else 0
    if extra and not isinstance(lift.out_axes, int):
      raise NotImplementedError(
          "dfax: feedback points inside nn.scan/nn.vmap need an integer "
          f"out_axes (got {lift.out_axes!r}). Use out_axes=0, or select "
          "points outside the transformed module.")
    frame = self.frames[-1]
    for value, (path, stack_ndim) in zip(packed.values, packed.meta):
      if extra and lift.out_axes != 0:
        value = jnp.moveaxis(value, lift.out_axes, 0)
      frame.values.append(value)
      frame.meta.append((path, stack_ndim + extra))
    return stripped

  # -- cuts ------------------------------------------------------------------
  def _cut_inputs(self, path, module, args, kwargs):
    self.num_selected += 1
    frame = self.frames[-1]
    base = "/".join(str(p) for p in path) or type(module).__name__
    leaves, treedef = jax.tree_util.tree_flatten((args, kwargs))
    n_float = sum(_is_float_array(x) for x in leaves)
    new_leaves, k = [], 0
    for x in leaves:
      if _is_float_array(x):
        path = f"{base}/in" if n_float == 1 else f"{base}/in{k}"
        k += 1
        x = self._cut(frame, x, path)
      new_leaves.append(x)
    return jax.tree_util.tree_unflatten(treedef, new_leaves)

  def _cut(self, frame: _Frame, x, path: str):
    if id(x) in frame.cut_ids:
      return x
    if id(x) in frame.cut_of:
      return frame.cut_of[id(x)][1]
    if frame.lifted or self.depends(x):
      frame.values.append(x)
      frame.meta.append((path, 0))
    cut = jax.lax.stop_gradient(x)
    frame.cut_of[id(x)] = (x, cut)
    frame.cut_ids.add(id(cut))
    return cut

  # -- the tap ---------------------------------------------------------------
  def _tap(self, out, frame: _Frame, module):
    keep = [(v, m) for v, m in zip(frame.values, frame.meta) if self.depends(v)]
    if not keep:
      return out
    if not _is_float_array(out):
      raise TypeError(
          f"dfax: the model's output (from {type(module).__name__}) is a "
          f"{type(out).__name__}, not an array. DFA needs one output array "
          "whose error it projects: make __call__ return the logits (return "
          "auxiliary values through has_aux or a separate method), or apply "
          "the model with method= pointing at a method that returns an array.")
    specs = [PointSpec(path=p, shape=tuple(v.shape), dtype=v.dtype, stack_ndim=s)
             for v, (p, s) in keep]
    values = tuple(v for v, _ in keep)
    self.specs.extend(specs)
    self.num_taps += 1
    tap = make_tap(specs, self.projector, [value_vma(v) for v in values])
    return tap(out, values)
