"""The output tap: where the output error is read and projected.

``tap(y, values)`` is the identity on ``y`` in the forward pass. In the
backward pass it receives the output error ``e = dL/dy``, passes ``e`` on to
``y`` unchanged (the segment after the last cut trains as with backprop) and
hands each feedback value the cotangent ``projector(e, specs)[k]``. Since
the values themselves are cut (stop-gradient) before flowing on, that
cotangent back-propagates only through the segment that produced each value.

Which candidate values are feedback points is decided here, with JAX's
public ``symbolic_zeros`` protocol: the tap's forward rule is told which of
its inputs are *perturbed*, i.e. depend on the differentiated arguments. A
value that is not (raw inputs, token ids, a mask) gets no projection.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax
import jax.numpy as jnp

from dfax.core.points import PointSpec
from dfax.core.projector import Projector


def value_vma(x) -> frozenset:
  """Manual mesh axes a value varies over (empty outside shard_map)."""
  aval = jax.typeof(x)
  axis_type = getattr(aval, "manual_axis_type", None)  # jax >= 0.9
  if axis_type is not None:
    return frozenset(axis_type.varying)
  return frozenset(getattr(aval, "vma", frozenset()))


def _match_vma(c: jax.Array, vma: frozenset) -> jax.Array:
  """Marks a cotangent as varying over the manual axes its primal varies over.

  Under ``shard_map`` with its varying-axis checks, a cotangent must have the
  same type as its primal: a value built only from replicated keys (e.g. a
  projection that ignores the error) would otherwise be rejected.
  """
  missing = tuple(sorted(vma - value_vma(c)))
  return jax.lax.pcast(c, missing, to="varying") if missing else c


def check_cotangents(cotangents: Any, specs: Sequence[PointSpec]) -> list[jax.Array]:
  """Validates a projector's output against the points it was asked for.

  Args:
    cotangents: what the projector returned.
    specs: the points it was asked for.

  Returns:
    The cotangents, cast to their points' dtypes.

  Raises:
    TypeError / ValueError: naming the point and the fix.
  """
  if not isinstance(cotangents, (list, tuple)):
    raise TypeError(
        "dfax: a projector must return a list or tuple of arrays, one per "
        f"feedback point; got {type(cotangents).__name__}.")
  if len(cotangents) != len(specs):
    raise ValueError(
        f"dfax: the projector returned {len(cotangents)} cotangents for "
        f"{len(specs)} feedback points ({[s.path for s in specs]}); return "
        "exactly one array per point, in the order of `points`.")
  out = []
  for c, spec in zip(cotangents, specs):
    if tuple(jnp.shape(c)) != tuple(spec.shape):
      raise ValueError(
          f"dfax: the projector returned shape {tuple(jnp.shape(c))} for "
          f"feedback point {spec.path!r}, which has shape {spec.shape}; "
          "each cotangent must have exactly its point's shape.")
    dtype = jnp.result_type(c)
    if not jnp.issubdtype(dtype, jnp.floating):
      raise TypeError(
          f"dfax: the projector returned dtype {dtype} for feedback point "
          f"{spec.path!r}; cotangents must be real floating-point arrays (take the "
          "real part of a complex projection, cast integer or boolean results).")
    out.append(jnp.asarray(c).astype(spec.dtype))
  return out


@dataclasses.dataclass
class TapState:
  """What the tap's forward rule learnt, read back by the caller."""

  perturbed: tuple[bool, ...] | None = None  # per value; None: never differentiated


def _dense(ct):
  """A cotangent that may be a symbolic zero, as an array."""
  if isinstance(ct, jax.custom_derivatives.SymbolicZero):
    return jnp.zeros(ct.aval.shape, ct.aval.dtype)
  return ct


def make_tap(specs: Sequence[PointSpec], projector: Projector, state: TapState,
             vmas: Sequence[frozenset] | None = None):
  """Builds ``tap(y, values) -> y`` whose backward projects the output error.

  Args:
    specs: one ``PointSpec`` per candidate value, in forward order.
    projector: ``projector(error, specs) -> cotangents``; it is asked only
      for the values that depend on the differentiated arguments.
    state: filled in by the forward rule with the perturbed flags.
    vmas: per value, the manual mesh axes it varies over (inside shard_map).

  Returns:
    A function ``tap(y, values)`` with a custom VJP.
  """
  specs = tuple(specs)
  vmas = tuple(vmas) if vmas is not None else (frozenset(),) * len(specs)

  @jax.custom_vjp
  def tap(y, values):
    del values
    return y

  def tap_fwd(y, values):
    state.perturbed = tuple(bool(v.perturbed) for v in values)
    return y.value, None

  def tap_bwd(_, error):
    error = _dense(error)
    keep = [i for i, p in enumerate(state.perturbed) if p]
    if not keep:  # the caller raises: no value depends on the arguments
      return error, (None,) * len(specs)
    projected = check_cotangents(projector(error, [specs[i] for i in keep]),
                                 [specs[i] for i in keep])
    cotangents: list[Any] = [None] * len(specs)
    for i, c in zip(keep, projected):
      cotangents[i] = _match_vma(c, vmas[i])
    return error, tuple(cotangents)

  tap.defvjp(tap_fwd, tap_bwd, symbolic_zeros=True)
  return tap
