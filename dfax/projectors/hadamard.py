"""Structured random projection: randomized Hadamard (SRHT-style), O(n log n).

For a point of per-example width ``d`` and an error of size ``n``, with
``m = 2^ceil(log2(n))``: flip the error's signs with a keyed ±1 vector,
zero-pad it to ``m`` and apply the orthonormal Walsh–Hadamard transform. A
point wider than ``m`` takes ``ceil(d / m)`` such blocks, each with its own
input signs; a narrower one keeps ``d`` keyed coordinates. The output signs
are flipped once more. Each point (and each stacked copy) has its own keys,
folded from its path as for the dense projectors. No random matrix is drawn:
only signs (and indices), so the cost is ``O(d log m)`` per example instead
of the ``n * d`` multiply-adds and ``n * d`` draws of a dense projection.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from scipy.linalg import hadamard as sylvester_hadamard

from dfax.projectors.per_point import per_point

_MAX_FACTOR_BITS = 5  # Kronecker factors of at most 32 x 32: small, dense, fast matmuls


@functools.lru_cache(maxsize=None)
def _factor_sizes(m: int) -> tuple[int, ...]:
  bits = m.bit_length() - 1
  parts = max(1, -(-bits // _MAX_FACTOR_BITS))
  return tuple(1 << (bits // parts + (i < bits % parts)) for i in range(parts))


def fwht(x: jax.Array) -> jax.Array:
  """Orthonormal fast Walsh–Hadamard transform over the last axis (a power of 2).

  ``H_m = H_a ⊗ H_b ⊗ ...`` (Sylvester order), so the transform is a few
  small dense matmuls, one per Kronecker factor of at most 32 x 32: about
  ``m * 32 * log_32(m)`` multiply-adds per row, run by the matmul units
  rather than ``log2(m)`` memory-bound butterfly passes.

  Args:
    x: array whose last axis has power-of-two length ``m``.

  Returns:
    ``x @ H_m.T / sqrt(m)``, same shape and dtype.

  Examples:
    >>> fwht(jnp.array([1.0, 0.0]))
    Array([0.7071, 0.7071], dtype=float32)
  """
  m = x.shape[-1]
  if m < 1 or m & (m - 1):
    raise ValueError(f"fwht needs a power-of-two length, got {m}.")
  lead = x.shape[:-1]
  factors = _factor_sizes(m)
  y = x.reshape(-1, *factors)
  letters = "abcdefgh"[:len(factors)]
  for i, f in enumerate(factors):
    h = jnp.asarray(sylvester_hadamard(f), x.dtype)
    out = letters.replace(letters[i], "z")
    y = jnp.einsum(f"n{letters},z{letters[i]}->n{out}", y, h)
  return (y.reshape(*lead, m) / np.sqrt(m)).astype(x.dtype)


def _srht(error2d: jax.Array, key: jax.Array, width: int, scale: float) -> jax.Array:
  rows, n = error2d.shape
  m = 1 << math.ceil(math.log2(max(n, 2)))
  blocks = -(-width // m)
  k_in, k_pick, k_out = jax.random.split(key, 3)
  signs_in = jax.random.rademacher(k_in, (blocks, n), error2d.dtype)
  x = jnp.pad(error2d[:, None, :] * signs_in, ((0, 0), (0, 0), (0, m - n)))
  y = fwht(x).reshape(rows, blocks * m)
  if width < m:  # a keyed subset of coordinates; wider points use whole blocks
    y = y[:, jax.random.permutation(k_pick, m)[:width]]
  else:
    y = y[:, :width]
  signs_out = jax.random.rademacher(k_out, (width,), error2d.dtype)
  return y * (signs_out * jnp.asarray(scale * math.sqrt(m), error2d.dtype))


def hadamard(key: jax.Array, *, scale: float | str = "error", tie_copies: bool = False,
             feature_ndim: int | None = None):
  """A projector with a keyed randomized Hadamard transform per point.

  Args:
    key: PRNG key; each point's transform comes from ``fold_in(key, path)``.
    scale: "error" makes each output entry's variance ``|e|^2 / n`` like the
      dense ``gaussian(key)`` projector; a number sets the implicit matrix's
      entry scale (its entries are ±scale/sqrt(m)*sqrt(m) = ±scale up to the
      Hadamard signs).
    tie_copies, feature_ndim: as in ``dfax.projectors.dense``.

  Returns:
    ``projector(error, points) -> list of cotangents``.

  Examples:
    >>> import flax.linen as nn, dfax
    >>> model = nn.Sequential([nn.Dense(16), nn.tanh, nn.Dense(3)])
    >>> x = jnp.ones((4, 5))
    >>> params = model.init(jax.random.key(0), x)
    >>> loss_fn = lambda p: model.apply(p, x).sum()
    >>> key = jax.random.key(1)
    >>> grads = dfax.dfa_grad(loss_fn, projector=dfax.projectors.hadamard(key))(params)
    >>> grads["params"]["layers_0"]["kernel"].shape
    (5, 16)
  """
  if scale != "error" and (isinstance(scale, bool) or not isinstance(scale, (int, float))):
    raise ValueError(f"dfax.projectors.hadamard: scale={scale!r} must be 'error' or a number; "
                     "'point' has no meaning for an implicit matrix without a width.")

  def rows(error2d, point_key, width):
    s = 1.0 / math.sqrt(error2d.shape[-1]) if scale == "error" else float(scale)
    return _srht(error2d, point_key, width, s)

  return per_point(rows, key, tie_copies=tie_copies, feature_ndim=feature_ndim,
                   name="hadamard")
