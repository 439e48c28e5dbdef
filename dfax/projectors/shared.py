"""One shared projection sliced across points (TinyDFA-style, one big matmul).

This is what an optical device computes: a single random matrix ``B`` of
shape ``(n_out, D)`` projects the error once, and each feedback point takes
its own slice of the result. With ``reuse=False`` (default) ``D`` is the sum
of all point widths and every point gets a distinct slice; with ``reuse=True``
``D`` is the largest width and every point takes the first ``d_k`` columns
(Launay et al. 2020's TinyDFA: points of equal width get the same signal).
``tie_copies`` and ``feature_ndim`` mean what they mean for the per-point
projectors: the layers of a scanned point share one slice, and the dims in
front of the last ``feature_ndim`` (a ViT's tokens) share its columns. With
all three, every normalised copy of a residual stream gets one signal.

Pooled points (``PointSpec.pooled``, an encoder's source tokens) take their
slice of the same matrix applied to the token-averaged error: the averaged
rows are appended to the error's rows, so there is still one pass.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp

from dfax.core.points import PointSpec, check_lead_dims, pool_error
from dfax.projectors.dense import DEFAULT_TILE, resolve_scale, sample, tiled_matmul
from dfax.projectors.per_point import check_feature_ndim, kept_dims


def slice_layout(points: Sequence[PointSpec], n_lead: int | Sequence[int],
                 reuse: bool) -> tuple[list[int], int]:
  """Column offset of each point's slice (copies of a stacked point in a row), and D.

  ``n_lead``: the lead dims shared with the error, one number for all points
  or one per point (``check_lead_dims``; pooled points share fewer).
  """
  n_leads = [n_lead] * len(points) if isinstance(n_lead, int) else list(n_lead)
  return column_offsets([p.feature_size(n) * p.num_copies for p, n in zip(points, n_leads)],
                        reuse)


def stacked_rows(error, points: Sequence[PointSpec]):
  """The error's rows, then the pooled error's rows for each pooling the points ask for.

  Args:
    error: the output error, ``lead + (n_out,)``.
    points: the points; their ``pooled`` values decide which poolings are added.

  Returns:
    ``(rows, starts)``: ``rows`` is ``(N, n_out)`` with the per-token rows first
    (when some point is not pooled) and each pooling's per-example rows after
    them; ``starts[p]`` is ``(first row, number of rows)`` for pooling ``p``.
  """
  n_out = error.shape[-1]
  blocks, starts, at = [], {}, 0
  for pooled in sorted({p.pooled for p in points}):
    block = pool_error(error, pooled).reshape(-1, n_out)
    blocks.append(block)
    starts[pooled] = (at, block.shape[0])
    at += block.shape[0]
  return (blocks[0] if len(blocks) == 1 else jnp.concatenate(blocks)), starts


def column_offsets(widths: Sequence[int], reuse: bool) -> tuple[list[int], int]:
  """Column offset of slices of ``widths[i]`` columns (all 0 when ``reuse``), and D."""
  offsets, total = [], 0
  for width in widths:
    offsets.append(0 if reuse else total)
    total = max(total, width) if reuse else total + width
  return offsets, total


def shared(key: jax.Array, *, distribution: str = "gaussian", scale: float | str = "error",
           reuse: bool = False, tile: int = DEFAULT_TILE, tie_copies: bool = False,
           feature_ndim: int | None = None):
  """A projector with one shared matrix for all points.

  Args:
    key: PRNG key of the shared matrix.
    distribution: ``"gaussian"`` or ``"uniform"``.
    scale: ``"error"`` (1/sqrt(n_out)), ``"point"`` (1/sqrt(D), TinyDFA's
      division by the square root of the widest point when ``reuse``) or a number.
    reuse: every point takes a prefix of one max-width projection (TinyDFA)
      instead of its own slice.
    tile: columns generated at once.
    tie_copies: the copies of a stacked point (the layers of an ``nn.scan``)
      share one slice instead of taking one each.
    feature_ndim: how many trailing dims of each point get their own columns;
      the dims between the error's lead dims and these receive the same
      projection. ``None``: every dim after the lead dims.

  Returns:
    ``projector(error, points) -> list of cotangents``.

  Examples:
    >>> import dfax
    >>> from dfax import PointSpec
    >>> proj = dfax.projectors.shared(jax.random.key(0), reuse=True, scale="point")
    >>> points = [PointSpec("Dense_0/in", (4, 8), jnp.float32),
    ...           PointSpec("Dense_1/in", (4, 6), jnp.float32)]
    >>> [c.shape for c in proj(jnp.ones((4, 3)), points)]
    [(4, 8), (4, 6)]
  """
  sample(jax.random.key(0), (1,), distribution, jnp.float32)
  resolve_scale(scale, 1, 1)
  check_feature_ndim(feature_ndim, "shared")

  def projector(error, points):
    n_leads = [check_lead_dims(error.shape, p) for p in points]
    n_out = error.shape[-1]
    kept = [kept_dims(p, n, feature_ndim) for p, n in zip(points, n_leads)]
    copies = [1 if tie_copies else p.num_copies for p in points]
    offsets, total = column_offsets([math.prod(k) * c for k, c in zip(kept, copies)], reuse)
    error2d, row_starts = stacked_rows(error, points)
    s = resolve_scale(scale, n_out, total)
    full = tiled_matmul(error2d, key, total, distribution=distribution, scale=s, tile=tile)
    out = []
    for p, n_lead, start, k, c in zip(points, n_leads, offsets, kept, copies):
      width = math.prod(k)
      first, count = row_starts[p.pooled]
      chunk = full[first:first + count, start:start + width * c].reshape(-1, c, width)
      stack = p.stack_shape if c > 1 else (1,) * p.stack_ndim
      shared_dims = (1,) * (len(p.unstacked_shape) - n_lead - len(k))
      lead = p.unstacked_shape[:n_lead]
      chunk = jnp.moveaxis(chunk, 1, 0).reshape(stack + lead + shared_dims + k)
      out.append(jnp.broadcast_to(chunk, p.shape))
    return out

  return projector
