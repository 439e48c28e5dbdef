"""Feedback for one stage: the copies of a stacked point that a device owns.

A pipeline stage needs the cotangents of its own copies of a stacked feedback
point (copy ``s`` of ``stages/out/in``, or copies ``s * k ... s * k + k - 1``
of a per-block point), computed from the output error with the same matrices
as ``dfax.dfa_grad`` on one device. ``from_projector`` works with any dfax
projector by projecting every copy and keeping its own (cost: all copies on
every stage); ``keyed_dense`` draws only the matrices it needs and equals
``dfax.projectors.dense`` (untied copies, every feature dim its own column).
"""

from __future__ import annotations

from typing import Callable

import jax

from dfax.core.points import PointSpec
from dfax.projectors.dense import DEFAULT_TILE, dense_rows
from dfax.projectors.per_point import project_point

# (error, stacked spec, flat copy indices (k,)) -> (k,) + spec.unstacked_shape
StageFeedback = Callable[[jax.Array, PointSpec, jax.Array], jax.Array]


def from_projector(projector: Callable) -> StageFeedback:
  """Wraps any ``projector(error, points)``: projects all copies, keeps the asked ones.

  Examples:
    >>> import jax.numpy as jnp, dfax
    >>> fb = from_projector(dfax.projectors.gaussian(jax.random.key(0)))
    >>> spec = PointSpec("stages/out/in", (4, 2, 8), jnp.float32, stack_ndim=1)
    >>> fb(jnp.ones((2, 3)), spec, jnp.array([1])).shape
    (1, 2, 8)
  """

  def feedback(error, spec, copies):
    full = projector(error, [spec])[0]
    return full.reshape((spec.num_copies,) + spec.unstacked_shape)[copies]

  return feedback


def keyed_dense(key: jax.Array, *, distribution: str = "gaussian", scale: float | str = "error",
                tile: int = DEFAULT_TILE) -> StageFeedback:
  """Only the asked copies of ``dfax.projectors.dense(key, ...)``'s projection.

  Args:
    key: the projector's key (as given to ``dfax.projectors.dense``).
    distribution, scale, tile: as in ``dfax.projectors.dense``.

  Returns:
    A ``StageFeedback``; its output equals the dense projector's copies.

  Examples:
    >>> import jax.numpy as jnp
    >>> fb = keyed_dense(jax.random.key(0))
    >>> spec = PointSpec("stages/out/in", (4, 2, 8), jnp.float32, stack_ndim=1)
    >>> fb(jnp.ones((2, 3)), spec, jnp.array([3])).shape
    (1, 2, 8)
  """
  rows = dense_rows(distribution, scale, tile)

  def feedback(error, spec, copies):
    return project_point(error, spec, key, rows, copies=copies).astype(spec.dtype)

  return feedback
