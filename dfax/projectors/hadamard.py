"""Structured random projection: randomized Hadamard (SRHT-style), O(n log n).

For a point of per-example width ``d`` and an error of size ``n``, with
``m = 2^ceil(log2(max(n, d)))``: flip the error's signs with a keyed ±1
vector, zero-pad to ``m``, apply the orthonormal Walsh–Hadamard transform,
keep ``d`` keyed coordinates and flip their signs again. Each point (and
each stacked copy) has its own keys, folded from its path as for the dense
projectors. Cost per example: ``m log2 m`` additions instead of ``n * d``
multiply-adds, and no random matrix at all (only 2m signs and m indices).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from dfax.core.points import PointSpec, check_lead_dims
from dfax.projectors.keys import copy_keys, path_key


def fwht(x: jax.Array) -> jax.Array:
  """Orthonormal fast Walsh–Hadamard transform over the last axis (a power of 2).

  Example::

    >>> fwht(jnp.array([1.0, 0.0]))   # [0.7071, 0.7071]
  """
  m = x.shape[-1]
  if m & (m - 1):
    raise ValueError(f"fwht needs a power-of-two length, got {m}.")
  lead = x.shape[:-1]
  h = 1
  while h < m:
    y = x.reshape(*lead, m // (2 * h), 2, h)
    x = jnp.stack([y[..., 0, :] + y[..., 1, :], y[..., 0, :] - y[..., 1, :]], axis=-2)
    x = x.reshape(*lead, m)
    h *= 2
  return x / jnp.sqrt(jnp.asarray(m, x.dtype))


def _srht(error2d: jax.Array, key: jax.Array, width: int, scale: float) -> jax.Array:
  n = error2d.shape[-1]
  m = 1 << math.ceil(math.log2(max(n, width, 2)))
  k_in, k_pick, k_out = jax.random.split(key, 3)
  signs_in = jax.random.rademacher(k_in, (n,), error2d.dtype)
  x = jnp.pad(error2d * signs_in, ((0, 0), (0, m - n)))
  picked = jax.random.permutation(k_pick, m)[:width]
  signs_out = jax.random.rademacher(k_out, (width,), error2d.dtype)
  return fwht(x)[:, picked] * signs_out * jnp.asarray(scale * math.sqrt(m), error2d.dtype)


def hadamard(key: jax.Array, *, scale: float | str = "error"):
  """A projector with a keyed randomized Hadamard transform per point.

  Args:
    key: PRNG key; each point's transform comes from ``fold_in(key, path)``.
    scale: "error" makes each output entry's variance ``|e|^2 / n`` like the
      dense ``gaussian(key)`` projector; a number sets the implicit matrix's
      entry scale (its entries are ±scale/sqrt(m)*sqrt(m) = ±scale up to the
      Hadamard signs).

  Returns:
    ``projector(error, points) -> list of cotangents``.

  Example::

    grads = dfax.dfa_grad(loss_fn, projector=dfax.projectors.hadamard(key))(params, x, y)
  """

  def project(error: jax.Array, spec: PointSpec) -> jax.Array:
    n_lead = check_lead_dims(error.shape, spec)
    n = error.shape[-1]
    s = 1.0 / math.sqrt(n) if scale == "error" else float(scale)
    width = spec.feature_size(n_lead)
    error2d = error.reshape(-1, n)
    run = lambda k: _srht(error2d, k, width, s)
    pkey = path_key(key, spec.path)
    if spec.stack_ndim == 0:
      return run(pkey).reshape(spec.shape)
    return jax.vmap(run)(copy_keys(pkey, spec.num_copies)).reshape(spec.shape)

  def projector(error, points):
    return [project(error, p) for p in points]

  return projector
