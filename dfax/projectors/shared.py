"""One shared projection sliced across points (TinyDFA-style, one big matmul).

This is what an optical device computes: a single random matrix ``B`` of
shape ``(n_out, D)`` projects the error once, and each feedback point takes
its own slice of the result. With ``reuse=False`` (default) ``D`` is the sum
of all point widths and every point gets a distinct slice; with ``reuse=True``
``D`` is the largest width and every point takes the first ``d_k`` columns
(Launay et al. 2020's TinyDFA: points of equal width get the same signal).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from dfax.core.points import PointSpec, check_lead_dims
from dfax.projectors.dense import DEFAULT_TILE, resolve_scale, sample, tiled_matmul


def slice_layout(points: Sequence[PointSpec], n_lead: int, reuse: bool) -> tuple[list[int], int]:
  """Column offset of each point's slice (copies of a stacked point in a row), and D."""
  offsets, total = [], 0
  for p in points:
    width = p.feature_size(n_lead) * p.num_copies
    offsets.append(0 if reuse else total)
    total = max(total, width) if reuse else total + width
  return offsets, total


def shared(key: jax.Array, *, distribution: str = "gaussian", scale: float | str = "error",
           reuse: bool = False, tile: int = DEFAULT_TILE):
  """A projector with one shared matrix for all points.

  Args:
    key: PRNG key of the shared matrix.
    distribution: ``"gaussian"`` or ``"uniform"``.
    scale: ``"error"`` (1/sqrt(n_out)), ``"point"`` (1/sqrt(D), TinyDFA's
      division by the square root of the widest point when ``reuse``) or a number.
    reuse: every point takes a prefix of one max-width projection (TinyDFA)
      instead of its own slice.
    tile: columns generated at once.

  Returns:
    ``projector(error, points) -> list of cotangents``.

  Example::

    proj = dfax.projectors.shared(jax.random.key(0), reuse=True, scale="point")
  """
  sample(jax.random.key(0), (1,), distribution, jnp.float32)
  resolve_scale(scale, 1, 1)

  def projector(error, points):
    n_leads = {check_lead_dims(error.shape, p) for p in points}
    n_lead = n_leads.pop()
    n_out = error.shape[-1]
    offsets, total = slice_layout(points, n_lead, reuse)
    error2d = error.reshape(-1, n_out)
    s = resolve_scale(scale, n_out, total)
    full = tiled_matmul(error2d, key, total, distribution=distribution, scale=s, tile=tile)
    lead = error.shape[:-1]
    out = []
    for p, start in zip(points, offsets):
      width = p.feature_size(n_lead)
      chunk = full[:, start:start + width * p.num_copies]
      chunk = chunk.reshape(-1, p.num_copies, width)  # (N, copies, width)
      chunk = jnp.moveaxis(chunk, 1, 0).reshape(p.stack_shape + lead + p.unstacked_shape[n_lead:])
      out.append(chunk)
    return out

  return projector
