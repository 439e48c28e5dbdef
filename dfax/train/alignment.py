"""Alignment diagnostics: how well DFA updates point along the true gradient."""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp


def _cosine(a_leaves, b_leaves) -> jax.Array:
  a = jnp.concatenate([g.ravel() for g in a_leaves])
  b = jnp.concatenate([g.ravel() for g in b_leaves])
  cos = jnp.vdot(a, b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b) + 1e-30)
  return jnp.clip(cos, -1.0, 1.0)  # rounding can overshoot for identical vectors


def layer_cosines(dfa_grads, bp_grads, stacked: Sequence[str] = ()) -> dict[str, jax.Array]:
  """Cosine between DFA and backprop gradients, per top-level module (layer).

  Args:
    dfa_grads, bp_grads: gradient pytrees shaped like ``{"params": {...}}``.
    stacked: top-level modules whose parameters stack layers along their
      first axis (an ``nn.scan``): each layer gets its own cosine,
      ``"blocks/0"``, ``"blocks/1"``, ...

  Returns:
    ``{layer name: cosine}``; 1 means the DFA update points exactly along the
    backprop gradient, 0 orthogonal. The last layer is exactly 1 under DFA.

  Examples:
    >>> import flax.linen as nn, dfax
    >>> model = nn.Sequential([nn.Dense(16), nn.tanh, nn.Dense(3)])
    >>> x = jnp.ones((4, 5))
    >>> p = model.init(jax.random.key(0), x)
    >>> loss = lambda p: model.apply(p, x).sum()
    >>> cos = layer_cosines(dfax.dfa_grad(loss)(p), jax.grad(loss)(p))
    >>> sorted(cos), float(cos["layers_2"])   # the output layer trains exactly
    (['layers_0', 'layers_2'], 1.0)
  """
  out = {}
  for name in dfa_grads["params"]:
    a = jax.tree.leaves(dfa_grads["params"][name])
    b = jax.tree.leaves(bp_grads["params"][name])
    if name in stacked:
      for i in range(a[0].shape[0]):
        out[f"{name}/{i}"] = _cosine([g[i] for g in a], [g[i] for g in b])
    else:
      out[name] = _cosine(a, b)
  return out
