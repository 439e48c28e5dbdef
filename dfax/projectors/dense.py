"""Dense random projections, one independent matrix per feedback point.

Each point ``k`` with per-example size ``d_k`` gets a matrix ``B_k`` of shape
``(n_out, d_k)``, regenerated from ``path_key(key, path)`` on every call and
never stored. ``B_k`` is defined column-tile by column-tile (``tile`` columns
each, tile ``j`` drawn from ``fold_in(point_key, j)``), and a projection wider
than one tile is computed tile by tile, so the full matrix never sits in
memory at once.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp

from dfax.core.points import PointSpec
from dfax.projectors.keys import tile_key
from dfax.projectors.per_point import RowProjection, per_point

DEFAULT_TILE = 4096


def sample(key: jax.Array, shape: tuple[int, ...], distribution: str, dtype) -> jax.Array:
  """Unit-scale samples: N(0, 1) for "gaussian", U(-1, 1) for "uniform"."""
  if distribution == "gaussian":
    return jax.random.normal(key, shape, dtype)
  if distribution == "uniform":
    return jax.random.uniform(key, shape, dtype, -1.0, 1.0)
  raise ValueError(f"dfax: distribution must be 'gaussian' or 'uniform', got {distribution!r}.")


def resolve_scale(scale: float | str, n_out: int, width: int) -> float:
  """Scale of the matrix entries.

  Args:
    scale: a number, ``"error"`` (1/sqrt(n_out): keeps the error's norm),
      or ``"point"`` (1/sqrt(width), Nøkland's ±1/sqrt(d) for uniform).
    n_out: output error size.
    width: per-example size of the point (or of the shared matrix).
  """
  if scale == "error":
    return 1.0 / math.sqrt(n_out)
  if scale == "point":
    return 1.0 / math.sqrt(width)
  if isinstance(scale, (int, float)):
    return float(scale)
  raise ValueError(f"dfax: scale must be a number, 'error' or 'point'; got {scale!r}.")


def tiled_matmul(error2d: jax.Array, key: jax.Array, width: int, *, distribution: str,
                 scale: float, tile: int) -> jax.Array:
  """``error2d @ B`` for the keyed ``(n_out, width)`` matrix ``B``, tile by tile.

  Args:
    error2d: ``(N, n_out)``.
    key: the matrix's key; tile ``j`` uses ``fold_in(key, j)``.
    width: number of columns of ``B``.
    distribution, scale: entries are ``scale * sample(distribution)``.
    tile: columns per tile.

  Returns:
    ``(N, width)`` array.
  """
  n_out = error2d.shape[-1]
  cols = min(tile, width)

  def one_tile(j):
    b = sample(tile_key(key, j), (n_out, cols), distribution, error2d.dtype)
    return error2d @ (b * jnp.asarray(scale, error2d.dtype))

  return concat_tiles(one_tile, width, cols)


def concat_tiles(one_tile: Callable[[Any], jax.Array], width: int, cols: int) -> jax.Array:
  """``[one_tile(0), one_tile(1), ...]`` side by side, cut to ``width`` columns.

  Args:
    one_tile: ``j -> (N, cols)`` array for column tile ``j``.
    width: total number of columns wanted.
    cols: columns per tile.

  Returns:
    ``(N, width)`` array. A single tile is called with the Python int 0 (so
    its keys can be derived while tracing); more run under ``lax.map``, one
    tile in memory at a time.
  """
  num_tiles = -(-width // cols)
  if num_tiles == 1:
    return one_tile(0)[:, :width]
  out = jax.lax.map(one_tile, jnp.arange(num_tiles))  # (tiles, N, cols)
  return jnp.moveaxis(out, 0, 1).reshape(out.shape[1], num_tiles * cols)[:, :width]


def check_dense_options(distribution: str, scale: float | str) -> None:
  """Raises a ValueError naming the fix for an unknown ``distribution`` or ``scale``."""
  sample(jax.random.key(0), (1,), distribution, jnp.float32)
  resolve_scale(scale, 1, 1)


def dense_rows(distribution: str, scale: float | str, tile: int) -> RowProjection:
  """The dense projectors' keyed row projection: ``(error2d, point_key, width) -> rows``.

  Raises:
    ValueError: for an unknown ``distribution`` or ``scale``, when called
      (not when the rows are traced).
  """
  check_dense_options(distribution, scale)

  def rows(error2d, point_key, width):
    return tiled_matmul(error2d, point_key, width, distribution=distribution,
                        scale=resolve_scale(scale, error2d.shape[-1], width), tile=tile)
  return rows


def dense(key: jax.Array, *, distribution: str = "gaussian", scale: float | str = "error",
          tile: int = DEFAULT_TILE,
          tie_copies: bool = False,
          feature_ndim: int | None = None) -> Callable[[jax.Array, Sequence[PointSpec]], list]:
  """A projector with an independent dense random matrix per point.

  Args:
    key: PRNG key; each point's matrix comes from ``fold_in(key, path)``.
    distribution: ``"gaussian"`` or ``"uniform"``.
    scale: entry scale, see ``resolve_scale``.
    tile: columns generated at once (bounds memory for wide points).
    tie_copies: the layers of a scanned (stacked) point share one matrix, so
      every residual block pushes the shared stream the same way; otherwise
      each layer has its own.
    feature_ndim: trailing dims of each point that get their own columns;
      the dims before them that the error lacks (a ViT's tokens, when the
      error is per image) all get the same projection. ``None``: all dims.

  Returns:
    ``projector(error, points) -> list of cotangents``.

  Examples:
    >>> import flax.linen as nn, dfax
    >>> model = nn.Sequential([nn.Dense(16), nn.tanh, nn.Dense(3)])
    >>> x = jnp.ones((4, 5))
    >>> params = model.init(jax.random.key(0), x)
    >>> loss_fn = lambda p: model.apply(p, x).sum()
    >>> proj = dfax.projectors.dense(jax.random.key(1), distribution="uniform", scale="point")
    >>> grads = dfax.dfa_grad(loss_fn, projector=proj)(params)
    >>> grads["params"]["layers_0"]["kernel"].shape
    (5, 16)
  """
  return per_point(dense_rows(distribution, scale, tile), key, tie_copies=tie_copies,
                   feature_ndim=feature_ndim, name="dense")


def gaussian(key: jax.Array, *, scale: float | str = "error", tile: int = DEFAULT_TILE,
             tie_copies: bool = False, feature_ndim: int | None = None):
  """Independent Gaussian matrices, entries N(0, scale^2). See ``dense``."""
  return dense(key, distribution="gaussian", scale=scale, tile=tile, tie_copies=tie_copies,
               feature_ndim=feature_ndim)


def uniform(key: jax.Array, *, scale: float | str = "point", tile: int = DEFAULT_TILE,
            tie_copies: bool = False, feature_ndim: int | None = None):
  """Independent uniform matrices, entries U(-scale, scale); default Nøkland's 1/sqrt(d)."""
  return dense(key, distribution="uniform", scale=scale, tile=tile, tie_copies=tie_copies,
               feature_ndim=feature_ndim)
