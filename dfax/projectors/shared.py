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

import jax

from dfax.projectors.dense import DEFAULT_TILE, dense_rows
from dfax.projectors.layout import project_once
from dfax.projectors.per_point import check_feature_ndim


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
    >>> import jax.numpy as jnp, dfax
    >>> from dfax import PointSpec
    >>> proj = dfax.projectors.shared(jax.random.key(0), reuse=True, scale="point")
    >>> points = [PointSpec("Dense_0/in", (4, 8), jnp.float32),
    ...           PointSpec("Dense_1/in", (4, 6), jnp.float32)]
    >>> [c.shape for c in proj(jnp.ones((4, 3)), points)]
    [(4, 8), (4, 6)]
  """
  rows_of = dense_rows(distribution, scale, tile)  # the dense projector's rows, one key
  check_feature_ndim(feature_ndim, "shared")

  def one_matrix(rows, total):
    return rows_of(rows, key, total)

  def projector(error, points):
    return project_once(error, points, one_matrix, reuse=reuse, tie_copies=tie_copies,
                        feature_ndim=feature_ndim)

  return projector
