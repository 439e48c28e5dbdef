"""Candidate feedback points: what the recorder keeps of each, and how they leave a lifted body.

While a loss function is traced, the recorder collects candidate points in a
``Frame``: the uncut value, its ``PointMeta`` and which cut replaced it. The
tap later keeps the candidates that depend on the differentiated arguments.

A Flax lifted transform (``nn.scan``, ``nn.vmap``, ``nn.remat``, ``nn.jit``)
traces its body in a JAX trace of its own, so values recorded there cannot be
used outside. ``pack`` returns them as extra outputs of the body (``nn.scan``
and ``nn.vmap`` stack them along ``out_axes`` like any other output), and
``unpack`` takes them off again in the outer call, before the caller sees
the output.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class PointMeta:
  """What the recorder knows of a candidate value besides the value (for ``PointSpec``)."""
  path: str  # the point's name
  stack_ndim: int
  owners: tuple[str, ...]  # the selected modules whose cut this value is
  pooled: int = 0  # PointSpec.pooled: token dims not shared with the error (dfax.pooled)


@dataclasses.dataclass
class Frame:
  """The candidates recorded in one JAX trace: the model's, or one lifted body's."""
  values: list = dataclasses.field(default_factory=list)
  meta: list = dataclasses.field(default_factory=list)
  cut_of: dict = dataclasses.field(default_factory=dict)  # id(x) -> (x, cut, index)
  cut_ids: set = dataclasses.field(default_factory=set)
  lifted: bool = False

  def add(self, x: jax.Array, value: jax.Array, cut: jax.Array, meta: PointMeta) -> jax.Array:
    """Records a point: ``value`` is what its feedback trains, ``cut`` replaces ``x``."""
    self.values.append(value)
    self.meta.append(meta)
    self.cut_of[id(x)] = (x, cut, len(self.values) - 1)
    self.cut_ids.add(id(cut))
    return cut


@dataclasses.dataclass
class Lift:
  """One lifted call in progress: its kind ("scan", "vmap" or "other") and ``out_axes``."""
  kind: str
  out_axes: Any
  active: bool = False  # whether its body is running


@jax.tree_util.register_pytree_node_class
class WithPoints:
  """A lifted body's output plus the candidate values recorded inside it."""

  def __init__(self, output, values, meta):
    self.output, self.values, self.meta = output, values, meta

  def tree_flatten(self):
    return (self.output, self.values), self.meta

  @classmethod
  def tree_unflatten(cls, meta, children):
    return cls(children[0], children[1], meta)


def pack(out: Any, kind: str, frame: Frame) -> Any:
  """A lifted body's output with ``frame``'s candidates as extra outputs.

  Args:
    out: what the body returned; for ``nn.scan`` a ``(carry, ys)`` pair.
    kind: the lift's kind; a scan's candidates travel with ``ys``, so they
      are stacked per step.
    frame: the candidates recorded in the body.

  Returns:
    ``out`` itself when the body recorded nothing, else ``out`` wrapped so
    that ``unpack`` finds the candidates.
  """
  if not frame.values:
    return out
  values, meta = tuple(frame.values), tuple(frame.meta)
  if kind == "scan":
    carry, ys = out
    return carry, WithPoints(ys, values, meta)
  return WithPoints(out, values, meta)


def unpack(out: Any, lift: Lift) -> tuple[Any, list[tuple[jax.Array, PointMeta]]]:
  """Takes the candidates ``pack`` added off a lifted call's output.

  Args:
    out: what the outer call of the lifted class returned.
    lift: the call's ``Lift``; ``nn.scan`` and ``nn.vmap`` add one stacked
      dimension (moved to the front) to every candidate.

  Returns:
    ``(output as the caller expects it, [(value, meta), ...])``.

  Examples:
    >>> import jax
    >>> import jax.numpy as jnp
    >>> from dfax.core.candidates import Frame, Lift, PointMeta, pack, unpack
    >>> frame = Frame()
    >>> x = jnp.ones((2, 8))
    >>> cut = frame.add(x, x, x + 0, PointMeta("block/in/0", 0, ("block",)))
    >>> # what nn.scan makes of a 3-step body's (carry, ys) output
    >>> packed = pack((jnp.zeros(8), jnp.zeros(8)), "scan", frame)
    >>> stacked = jax.tree.map(lambda v: jnp.stack([v] * 3), packed[1])
    >>> (carry, ys), points = unpack((packed[0], stacked), Lift("scan", out_axes=0))
    >>> ys.shape, [(v.shape, m.stack_ndim) for v, m in points]
    ((3, 8), [((3, 2, 8), 1)])
  """
  if lift.kind == "scan":
    if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], WithPoints)):
      return out, []
    carry, packed = out
    stripped = (carry, packed.output)
  elif isinstance(out, WithPoints):
    packed, stripped = out, out.output
  else:
    return out, []
  extra = 1 if lift.kind in ("scan", "vmap") else 0
  if extra and not isinstance(lift.out_axes, int):
    raise NotImplementedError(
        "dfax: feedback points inside nn.scan/nn.vmap need an integer "
        f"out_axes (got {lift.out_axes!r}). Use out_axes=0, or select "
        "points outside the transformed module.")
  points = []
  for value, meta in zip(packed.values, packed.meta):
    if extra and lift.out_axes != 0:
      value = jnp.moveaxis(value, lift.out_axes, 0)
    points.append((value, dataclasses.replace(meta, stack_ndim=meta.stack_ndim + extra)))
  return stripped, points
