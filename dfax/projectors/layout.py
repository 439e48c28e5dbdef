"""The column layout of a one-pass projector: each point's slice of one wide projection.

A projector that projects the error once for every point (the shared matrix,
an optical device, a host device behind a callback) lays the points side by
side in the columns of one ``(rows, total)`` result and hands each point its
slice. :func:`columns` computes where the slices sit, :func:`stacked_rows`
which rows a pooled point reads, and :func:`split` cuts the result back into
cotangents; :func:`project_once` does all three around one projection. The
options mean what they mean for the per-point projectors:

* ``tie_copies``: the copies of a stacked point (the layers of an ``nn.scan``)
  share one slice instead of one slice each;
* ``feature_ndim``: only the last ``feature_ndim`` dims of a point get their
  own columns; the dims in front of them that the error lacks (a ViT's
  tokens when the error is per image) get the same columns;
* ``reuse``: every slice starts at column 0 (``total`` is the widest point,
  TinyDFA's layout); otherwise the slices follow one another.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

import jax
import jax.numpy as jnp

from dfax.core.points import PointSpec, check_lead_dims, pool_error
from dfax.projectors.per_point import check_feature_ndim, kept_dims


@dataclasses.dataclass(frozen=True)
class Columns:
  """Where each point's cotangent sits in the columns of one projection of the error.

  Attributes:
    points: the points, in the projector's order.
    n_leads: per point, the number of the error's lead dims it shares.
    kept: per point, its trailing dims that get their own columns.
    copies: per point, the slices it takes side by side (its stacked copies,
      or 1 when tied or unstacked).
    offsets: per point, the first column of its slice.
    total: the number of columns of the projection.
  """

  points: tuple[PointSpec, ...]
  n_leads: tuple[int, ...]
  kept: tuple[tuple[int, ...], ...]
  copies: tuple[int, ...]
  offsets: tuple[int, ...]
  total: int


def column_offsets(widths: Sequence[int], reuse: bool) -> tuple[list[int], int]:
  """Column offset of slices of ``widths[i]`` columns (all 0 when ``reuse``), and the total.

  Examples:
    >>> column_offsets([3, 5], reuse=False), column_offsets([3, 5], reuse=True)
    (([0, 3], 8), ([0, 0], 5))
  """
  offsets, total = [], 0
  for width in widths:
    offsets.append(0 if reuse else total)
    total = max(total, width) if reuse else total + width
  return offsets, total


def columns(error_shape: tuple[int, ...], points: Sequence[PointSpec], *, reuse: bool = False,
            tie_copies: bool = False, feature_ndim: int | None = None) -> Columns:
  """The layout of ``points`` in one projection of an error of ``error_shape``.

  Raises:
    ValueError: a point whose lead dims do not match the error's, or a bad
      ``feature_ndim``.

  Examples:
    >>> pts = [PointSpec("a", (4, 8), "float32"), PointSpec("s", (3, 4, 6), "float32",
    ...                                                      stack_ndim=1)]
    >>> layout = columns((4, 10), pts)
    >>> layout.offsets, layout.total                        # 8 columns, then 3 copies of 6
    ((0, 8), 26)
    >>> columns((4, 10), pts, tie_copies=True).total         # the copies share their 6
    14
  """
  check_feature_ndim(feature_ndim, "layout")
  points = tuple(points)
  n_leads = tuple(check_lead_dims(tuple(error_shape), p) for p in points)
  kept = tuple(kept_dims(p, n, feature_ndim) for p, n in zip(points, n_leads))
  copies = tuple(1 if tie_copies else p.num_copies for p in points)
  offsets, total = column_offsets([math.prod(k) * c for k, c in zip(kept, copies)], reuse)
  return Columns(points, n_leads, kept, copies, tuple(offsets), total)


def stacked_rows(error: jax.Array, points: Sequence[PointSpec]) -> tuple[jax.Array, dict]:
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


def project_once(error: jax.Array, points: Sequence[PointSpec],
                 project: Callable[[jax.Array, int], jax.Array], *, reuse: bool = False,
                 tie_copies: bool = False, feature_ndim: int | None = None) -> list[jax.Array]:
  """One projection of the error's rows for every point, then each point's slice.

  Args:
    error: the output error, ``lead + (n_out,)``.
    points: the points.
    project: ``(rows (N, n_out), total) -> (N, total)``, the one pass (a
      matmul, a simulated or real device).
    reuse, tie_copies, feature_ndim: the layout options (:func:`columns`).

  Returns:
    One cotangent per point, of its shape.
  """
  layout = columns(error.shape, points, reuse=reuse, tie_copies=tie_copies,
                   feature_ndim=feature_ndim)
  rows, row_starts = stacked_rows(error, points)
  return split(project(rows, layout.total), layout, row_starts)


def split(full: jax.Array, layout: Columns, row_starts: dict | None = None) -> list[jax.Array]:
  """Each point's cotangent: its columns (and, if pooled, its rows) of ``full``, broadcast.

  Args:
    full: the projection, ``(rows, layout.total)``.
    layout: from :func:`columns`.
    row_starts: as :func:`stacked_rows` returns it; ``None``: every row of
      ``full`` is one of the error's own (no pooled point).

  Returns:
    One array of each point's full shape.
  """
  row_starts = {0: (0, full.shape[0])} if row_starts is None else row_starts
  out = []
  for p, n_lead, k, c, start in zip(layout.points, layout.n_leads, layout.kept, layout.copies,
                                    layout.offsets):
    width = math.prod(k)
    first, count = row_starts[p.pooled]
    chunk = full[first:first + count, start:start + width * c].reshape(-1, c, width)
    stack = p.stack_shape if c > 1 else (1,) * p.stack_ndim
    own = p.unstacked_shape
    shared_dims = (1,) * (len(own) - n_lead - len(k))  # pooled tokens, dims without columns
    chunk = jnp.moveaxis(chunk, 1, 0).reshape(stack + own[:n_lead] + shared_dims + k)
    out.append(jnp.broadcast_to(chunk, p.shape))
  return out
