"""Cuts feedback points while a loss function runs, and taps the output.

A ``Recorder`` is installed with ``flax.linen.intercept_methods`` for one
trace of the loss function (``dfax.nnx`` routes NNX module calls to it too).
For every selected module call it cuts the module's floating-point inputs
(the module sees ``stop_gradient(x)``), or with ``dfax.after`` its outputs,
and remembers the uncut value as a candidate point. When the outermost
module call returns, the tap (``tap.py``) is applied to its output together
with every candidate; the tap keeps those that depend on the differentiated
arguments.

Flax lifted transforms (``nn.scan``, ``nn.remat``, ``nn.jit``, ``nn.vmap``,
``nn.fold_rngs``) trace their body in a separate JAX trace, so values
remembered inside cannot be used outside. The recorder therefore opens a new
frame for each lifted body and returns the body's candidates as extra outputs
of the body; ``nn.scan`` stacks them per layer like any other scanned output.
Outside, the extra outputs are stripped again and become stacked candidates
(``candidates.py`` packs and unpacks them; ``lifted.py`` reaches the outer
call of a lifted class). A lifted *method* (``@nn.jit def __call__``) has no
such outer call: points made inside one raise an error that names the
transform instead of being lost.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax.core.scope import Scope

from dfax.core import lifted
from dfax.core.candidates import Frame, Lift, PointMeta, pack, unpack
from dfax.core.outputs import OutputSelector, is_float_array, map_float_leaves, select_output
from dfax.core.points import PointSpec
from dfax.core.selection import Selection
from dfax.core.cuts import _EXACT, cut_value, exact
from dfax.core.tap import TapState, make_tap, value_vma


@dataclasses.dataclass
class _Tapped:
  state: TapState
  meta: tuple[PointMeta, ...]
  owner: str = ""  # the top-level call, e.g. "TransformerLM.hidden"

  def made_points(self) -> bool:
    return any(self.state.perturbed or ())


def normalised(x: jax.Array, eps: float = 1e-6) -> jax.Array:
  """``x`` normalised over its last axis (zero mean, unit variance), without parameters."""
  centred = x - jnp.mean(x, axis=-1, keepdims=True)
  return centred * jax.lax.rsqrt(jnp.mean(jnp.square(centred), axis=-1, keepdims=True) + eps)


def _is_body_root(module: Any) -> bool:
  """The clone a lifted linen transform binds to fresh scopes to run its body."""
  parent = getattr(module, "parent", None)
  return isinstance(parent, Scope) and type(parent).__name__ != "TestScope"


def _label(path: tuple, module: Any) -> str:
  return "/".join(str(p) for p in path) or type(module).__name__


class Recorder:
  """Method interceptor that turns selected module inputs/outputs into DFA cuts.

  Args:
    selection: the parsed ``feedback=`` argument.
    projector: the projector the output tap uses.
    output: which leaf of a pytree model output the error is taken at.
    multiple_outputs: whether more than one top-level call may make points.
  """

  def __init__(self, selection: Selection, projector: Callable,
               output: OutputSelector = None, multiple_outputs: bool = False):
    self.selection = selection
    self.projector = projector
    self.output = output
    self.multiple_outputs = multiple_outputs
    self.exact_ids: set[int] = set()  # outputs of dfax.exactly modules (not cut at their users)
    self.frames: list[Frame] = []
    self.lifts: list[Lift] = []
    self.roots: list = []  # the top-level module and the lifted bodies dfax routed
    self.modules_seen: dict[str, int] = {}
    # module label -> (class name, entry indices, whether it had float values)
    self.selected: dict[str, list] = {}
    self.taps: list[_Tapped] = []
    self.at_output: set[str] = set()  # selected modules whose cut was the output, left out
    # The front-end interface (see ``dfax.core.transform.FrontEnd``): a front end whose
    # candidates reach the tap by another road (NNX transforms carry them out as state)
    # sets this to return them as ``(value, PointMeta)`` pairs when the tap is made.
    self.extra_points: Callable[[], list] | None = None

  # -- the interceptor -------------------------------------------------------
  def __call__(self, next_fun, args, kwargs, context):
    """``flax.linen.intercept_methods`` entry point."""
    module, method = context.module, context.method_name
    if method in ("setup", "<lambda>"):  # Flax's own abstract checks
      return next_fun(*args, **kwargs)
    return self.intercept(next_fun, args, kwargs, module, method, tuple(module.path),
                          body_root=_is_body_root(module))

  def count_module(self, module: Any) -> str:
    """Counts a module call (for "made no point" errors); returns its class name."""
    name = type(module).__name__
    self.modules_seen[name] = self.modules_seen.get(name, 0) + 1
    return name

  def intercept(self, next_fun, args, kwargs, module, method: str, path: tuple,
                body_root: bool = False):
    """Runs one module method call, cutting its inputs/outputs if it is selected.

    Args:
      next_fun: calls the method with (possibly cut) ``*args, **kwargs``.
      args, kwargs: the call's arguments.
      module: the module instance (linen or nnx).
      method: the method's name; only ``__call__`` can be selected.
      path: the module's path, e.g. ``("block_0", "mlp")``.
      body_root: whether this call runs the body of a lifted transform.

    Returns:
      The call's output (cut where selected; tapped for the outermost call).
    """
    name = self.count_module(module)
    if _EXACT.get() is True:
      return next_fun(*args, **kwargs)
    if self.frames and method == "__call__" and self.selection.is_exact(module, path):
      return self._run_exactly(next_fun, args, kwargs, _label(path, module))
    ins, outs = self.selection.match(module, path) if method == "__call__" else ([], [])
    if ins or outs:
      label = _label(path, module)
      entry = self.selected.setdefault(label, [name, set(), False])
      entry[1].update(ins + outs)
    call = _Call(module, path, ins, outs, top=not self.frames)
    if not self.frames:
      frame = Frame()
      out = self._with_root(module, self._run_in_frame, frame, next_fun, call, args, kwargs)
      return self._tap(out, frame, module, method)
    if self.lifts and not self.lifts[-1].active and body_root:
      return self._with_root(module, self._run_lifted_body, next_fun, call, args, kwargs)
    if body_root and not any(module is root for root in self.roots):
      return self._run_unrouted_body(next_fun, call, args, kwargs, method)
    return self._run_cut(next_fun, call, args, kwargs)

  def _run_exactly(self, next_fun, args, kwargs, label: str):
    """A ``dfax.exactly`` module: no cuts inside; inputs from outside the exact part are points.

    An input that no exact module produced is a boundary point
    (``label/in``, :meth:`boundary_cut`): the exact cotangent stops there,
    and what produced it (the last DFA-trained layers) gets the error's
    projection instead.
    """
    def boundary(x, name):
      if id(x) in self.exact_ids:
        return x
      return self.boundary_cut(x, True, f"{label}/{name}")

    args, kwargs = map_float_leaves((args, kwargs), "in", boundary)[0]
    with exact():
      out = next_fun(*args, **kwargs)
    self.exact_ids.update(id(x) for x in jax.tree.leaves(out) if is_float_array(x))
    return out

  def boundary_cut(self, x, when, name: str):
    """A boundary point at ``x`` (``dfax.exact_boundary``, ``dfax.exactly``'s inputs).

    Where ``when``: the cotangent from above stops at ``x``, and the feedback
    enters ``x`` through a parameter-free normalisation of its last axis,
    as a pre-LN residual stream gets its feedback through the LayerNorms
    that read it. Elsewhere ``x`` passes through untouched.
    """
    if not self.frames:
      return x
    frame = self.frames[-1]
    if id(x) in frame.cut_ids:  # already a cut: its own point trains what lies below
      return x
    if id(x) in frame.cut_of:
      return frame.cut_of[id(x)][1]
    value = normalised(x)
    if when is True:
      return frame.add(x, value, cut_value(x, name), PointMeta(name, 0, (name,)))
    return frame.add(x, jnp.where(when, value, jax.lax.stop_gradient(value)),
                     jnp.where(when, cut_value(x, name), x), PointMeta(name, 0, (name,)))

  def _with_root(self, module, run, *args):
    """Runs ``run(*args)`` with ``module`` known as a root (its own methods are no lift)."""
    self.roots.append(module)
    try:
      return run(*args)
    finally:
      self.roots.pop()

  # -- frames ----------------------------------------------------------------
  def _run_cut(self, next_fun, call, args, kwargs):
    if call.ins:
      args, kwargs = self._cut_tree(call, (args, kwargs), "in")
    out = next_fun(*args, **kwargs)
    if call.outs and not call.top:  # the model output itself is never cut
      out = self._cut_tree(call, out, "out")
    return out

  def _run_in_frame(self, frame, next_fun, call, args, kwargs):
    self.frames.append(frame)
    try:
      return self._run_cut(next_fun, call, args, kwargs)
    finally:
      self.frames.pop()

  def _run_lifted_body(self, next_fun, call, args, kwargs):
    lift = self.lifts[-1]
    frame = Frame(lifted=True)
    lift.active = True
    jit_on = lifted.jit_enabled() if lift.kind in lifted.CACHED_KINDS else (
        contextlib.nullcontext())
    try:
      with jit_on:
        out = self._run_in_frame(frame, next_fun, call, args, kwargs)
    finally:
      lift.active = False
    return pack(out, lift.kind, frame)

  def _run_unrouted_body(self, next_fun, call, args, kwargs, method: str):
    """A lifted body that dfax did not route: fine unless points are made in it.

    Flax runs the body of a lifted *method* (``@nn.jit`` or ``@nn.remat`` on a
    method, ``nn.scan`` of a function) on a clone bound to fresh scopes, in a
    JAX trace of its own. Values cut there cannot reach the tap, so rather than
    losing them silently this raises.
    """
    frame = self.frames[-1]
    before = len(frame.values)
    out = self._run_cut(next_fun, call, args, kwargs)
    if len(frame.values) > before:
      info = lifted.lift_info(getattr(type(call.module), method, None))
      transform = f"nn.{info[0]}" if info and info[0] else "a Flax lifted transform"
      where = _label(call.path, call.module)
      raise NotImplementedError(
          f"dfax: feedback points selected inside {where}.{method}, which runs under "
          f"{transform} applied to a method; dfax cannot take points out of it. Apply the "
          f"transform to the module class instead (e.g. nn.jit(Block), nn.remat(Block), "
          f"nn.scan(Block, ...)), or select points outside it.")
    return out

  def run_lifted(self, call_fn, args, kwargs, kind: str, out_axes: Any):
    """Runs the outer call of a lifted class; strips what its body recorded."""
    if _EXACT.get() is True:
      return call_fn(*args, **kwargs)
    if self.lifts and not self.lifts[-1].active:
      # This lifted call is itself the body of an enclosing lift
      # (nn.scan(nn.remat(Block))): open that body's frame around it.
      inner = lambda *a, **k: self._lifted_call(call_fn, a, k, kind, out_axes)
      return self._run_lifted_body(inner, _Call(None, (), [], []), args, kwargs)
    return self._lifted_call(call_fn, args, kwargs, kind, out_axes)

  def _lifted_call(self, call_fn, args, kwargs, kind: str, out_axes: Any):
    lift = Lift(kind=kind, out_axes=out_axes)
    self.lifts.append(lift)
    try:
      out = call_fn(*args, **kwargs)
    finally:
      self.lifts.pop()
    return self._strip_lifted(out, lift)

  def _strip_lifted(self, out, lift: Lift):
    stripped, points = unpack(out, lift)
    frame = self.frames[-1]
    frame.values.extend(value for value, _ in points)
    frame.meta.extend(meta for _, meta in points)
    return stripped

  # -- cuts ------------------------------------------------------------------
  def _cut_tree(self, call, tree, side: str):
    frame = self.frames[-1]
    label = _label(call.path, call.module)
    entries = call.ins if side == "in" else call.outs
    pool = max(self.selection.entries[i].pooled for i in entries)
    out, n_float = map_float_leaves(
        tree, side, lambda x, name: self._cut(frame, x, f"{label}/{name}", label, pool))
    if n_float:
      self.selected[label][2] = True
    return out

  def _cut(self, frame: Frame, x, name: str, owner: str, pooled: int = 0):
    if id(x) in frame.cut_ids:  # already a cut value (e.g. one block's output
      return x                  # is the next block's input)
    if id(x) in frame.cut_of:
      _, cut, index = frame.cut_of[id(x)]
      meta = frame.meta[index]
      if owner not in meta.owners or pooled > meta.pooled:  # pooled by any owner: pooled
        frame.meta[index] = dataclasses.replace(
            meta, owners=meta.owners + (owner,) * (owner not in meta.owners),
            pooled=max(pooled, meta.pooled))
      return cut
    meta = PointMeta(name, 0, (owner,), pooled)
    gate = _EXACT.get()
    if gate is False:
      return frame.add(x, x, cut_value(x, name), meta)
    # exact where the (traced) gate is true: no feedback there, the exact cotangent
    return frame.add(x, jnp.where(gate, jax.lax.stop_gradient(x), x),
                     jnp.where(gate, x, cut_value(x, name)), meta)

  # -- the tap ---------------------------------------------------------------
  def _tap(self, out, frame: Frame, module, method: str = "__call__"):
    if self.extra_points is not None:
      for value, meta in self.extra_points():
        frame.values.append(value)
        frame.meta.append(meta)
    if not frame.values:
      return out
    index, leaves, treedef = select_output(out, self.output, type(module).__name__)
    leaves = list(leaves)
    leaves[index] = self._drop_output_cut(frame, leaves[index])
    if not frame.values:  # the only cut was the output itself
      return jax.tree_util.tree_unflatten(treedef, leaves)
    values = tuple(frame.values)
    specs = [PointSpec(path=m.path, shape=tuple(v.shape), dtype=v.dtype,
                       stack_ndim=m.stack_ndim, pooled=m.pooled)
             for v, m in zip(values, frame.meta)]
    state = TapState()
    owner = type(module).__name__ + ("" if method == "__call__" else f".{method}")
    self.taps.append(_Tapped(state, tuple(frame.meta), owner))
    tap = make_tap(specs, self.projector, state, [value_vma(v) for v in values])
    leaves[index] = tap(leaves[index], values)
    return jax.tree_util.tree_unflatten(treedef, leaves)

  def _drop_output_cut(self, frame: Frame, leaf):
    """Leaves out a cut whose value is the output leaf itself; returns the leaf uncut.

    The error is taken at the output. A cut there (``dfax.after`` selecting
    the output layer, a marker at the very end) would hand the output layer a
    projection of its own error and leave nothing with the true one.
    """
    if id(leaf) not in frame.cut_ids:
      return leaf
    for x, cut, index in list(frame.cut_of.values()):
      if cut is leaf:
        self.at_output.update(frame.meta[index].owners)
        del frame.values[index], frame.meta[index]
        return x
    return leaf

  # -- after the trace -------------------------------------------------------
  def points_by_module(self) -> dict[str, int]:
    """How many feedback points each selected module made (0: none)."""
    made = {label: 0 for label in self.selected}
    for tapped in self.taps:
      flags = tapped.state.perturbed or (False,) * len(tapped.meta)
      for flag, meta in zip(flags, tapped.meta):
        for owner in meta.owners:
          made[owner] = made.get(owner, 0) + int(flag)
    return made


@dataclasses.dataclass
class _Call:
  module: Any
  path: tuple
  ins: list
  outs: list
  top: bool = False
