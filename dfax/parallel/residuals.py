"""A function's backward, split into stored arrays and a pure replay.

``jax.vjp`` returns its pullback as a pytree whose leaves are the residuals.
``split_vjp`` keeps the leaves that are not the parameters themselves (JAX
passes parameters through as residuals by identity), so many pullbacks of
the same function can be stacked (one per microbatch or per layer) without
copying the parameters, and replayed later under ``jax.vmap`` or
``jax.lax.scan``: that is what lets DFA run every stage's or every layer's
backward at once.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax


@dataclasses.dataclass
class Pullback:
  """Static structure of one function's pullback (the same for every call).

  Attributes:
    treedef: the pullback's tree structure.
    param_slots: for each leaf, the index of the parameter leaf it is, or -1
      for a stored residual.
  """
  treedef: Any = None
  param_slots: tuple[int, ...] = ()

  def record(self, vjp_fn, params) -> list:
    """Remembers the structure of ``vjp_fn``; returns its non-parameter leaves."""
    leaves, treedef = jax.tree_util.tree_flatten(vjp_fn)
    p_leaves = jax.tree_util.tree_leaves(params)
    slots = tuple(next((i for i, q in enumerate(p_leaves) if leaf is q), -1) for leaf in leaves)
    if self.treedef is None:  # later calls trace the same function: the first one is kept
      self.treedef, self.param_slots = treedef, slots
    elif (treedef.num_leaves, slots) != (self.treedef.num_leaves, self.param_slots):
      raise ValueError("dfax.parallel: the function's pullback changed structure between "
                       "calls; every call must use the same shapes and dtypes.")
    return [leaf for leaf, slot in zip(leaves, slots) if slot < 0]

  def rebuild(self, params, stored: list) -> Callable:
    """The pullback again, from ``params`` and the leaves ``record`` returned."""
    p_leaves = jax.tree_util.tree_leaves(params)
    it = iter(stored)
    leaves = [p_leaves[s] if s >= 0 else next(it) for s in self.param_slots]
    return jax.tree_util.tree_unflatten(self.treedef, leaves)


def split_vjp(fun: Callable, params, *args, pullback: Pullback) -> tuple[Any, list]:
  """``fun(params, *args)`` and the stored part of its pullback.

  Args:
    fun: the function to differentiate with respect to all its arguments.
    params: its first argument (kept out of the stored residuals).
    *args: the other arguments.
    pullback: collects the static structure; pass the same one to ``replay``.

  Returns:
    ``(output, stored)``: ``stored`` is a list of arrays, safe to stack.

  Examples:
    >>> import jax.numpy as jnp
    >>> pb = Pullback()
    >>> f = lambda w, x: jnp.tanh(x @ w)
    >>> y, stored = split_vjp(f, jnp.ones((3, 2)), jnp.ones((4, 3)), pullback=pb)
    >>> gw, gx = replay(pb, jnp.ones((3, 2)), stored, jnp.ones_like(y))
    >>> gw.shape, gx.shape
    ((3, 2), (4, 3))
  """
  out, vjp_fn = jax.vjp(fun, params, *args)
  return out, pullback.record(vjp_fn, params)


def replay(pullback: Pullback, params, stored: list, cotangent) -> tuple:
  """Runs the stored pullback on ``cotangent``; returns the cotangents of all arguments."""
  return pullback.rebuild(params, stored)(cotangent)
