"""Alignment diagnostics: how well DFA updates point along the true gradient."""

from __future__ import annotations

import flax
import jax
import jax.numpy as jnp


def layer_cosines(dfa_grads, bp_grads) -> dict[str, jax.Array]:
  """Cosine between DFA and backprop gradients, per top-level module (layer).

  Args:
    dfa_grads, bp_grads: gradient pytrees shaped like ``{"params": {...}}``.

  Returns:
    ``{layer name: cosine}``; 1 means the DFA update points exactly along the
    backprop gradient, 0 orthogonal. The last layer is exactly 1 under DFA.

  Example::

    cos = layer_cosines(dfax.dfa_grad(loss)(p, x, y), jax.grad(loss)(p, x, y))
  """
  out = {}
  for name in dfa_grads["params"]:
    a = jnp.concatenate([g.ravel() for g in jax.tree.leaves(dfa_grads["params"][name])])
    b = jnp.concatenate([g.ravel() for g in jax.tree.leaves(bp_grads["params"][name])])
    cos = jnp.vdot(a, b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b) + 1e-30)
    out[name] = jnp.clip(cos, -1.0, 1.0)  # rounding can overshoot for identical vectors
  return out


def flatten_names(tree) -> dict[str, float]:
  return {"/".join(k): float(v) for k, v in flax.traverse_util.flatten_dict(tree).items()}
