"""Control projectors: no feedback, or the error itself, instead of a random projection.

``zeros()``: every feedback point receives a zero cotangent. The segment after
the last cut (under the Transformer's macro preset: the last block, the final
LayerNorm and the head) trains with its exact gradient and everything before
it gets exactly no gradient. Comparing DFA against it shows what the random
feedback adds on top of the exactly trained tail, which the "shallow" baseline
(last layer only) does not.

``identity()``: every point receives the error unchanged (points as wide as the
error only). On a residual stack whose error is taken at the residual stream
(the LM's ``error_at="hidden"``), that is the gradient the skip connections
alone would carry: comparing it with DFA separates what is lost by cutting the
backward chain from what is lost by the feedback being random.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp

from dfax.core.points import PointSpec, check_lead_dims, pool_error

__all__ = ["zeros", "identity"]


def zeros() -> Callable[[jax.Array, Sequence[PointSpec]], list]:
  """A projector that returns zeros of each point's shape and dtype.

  The points are checked as a random projector checks them (a pooled
  encoder point must keep the error's example dims), so a layout the control
  accepts is one that DFA accepts too.

  Returns:
    ``projector(error, points) -> list of zero cotangents``.

  Examples:
    >>> import jax.numpy as jnp, dfax
    >>> enc = dfax.PointSpec("encoder/ln/out", (2, 12, 16), jnp.float32, pooled=1)
    >>> [c.shape for c in dfax.projectors.zeros()(jnp.ones((2, 8, 40)), [enc])]
    [(2, 12, 16)]
  """

  def projector(error, points):
    for p in points:
      check_lead_dims(error.shape, p)
    return [jnp.zeros(p.shape, p.dtype) for p in points]

  return projector


def identity() -> Callable[[jax.Array, Sequence[PointSpec]], list]:
  """Fixed identity feedback: each point receives the error itself.

  For points as wide as the error (a residual stream of width d_model when the
  error is taken before the LM head), this is the gradient the skip
  connections alone would carry; it is a fixed but not a random feedback. A
  pooled point receives the token-averaged error on each of its own tokens.

  Raises:
    ValueError: for a point whose per-example width differs from the error's.
  """

  def projector(error, points):
    out = []
    for p in points:
      n_lead = check_lead_dims(error.shape, p)
      if p.feature_size(n_lead) != error.shape[-1]:
        raise ValueError(f"dfax.projectors.identity: point {p.path!r} has width "
                         f"{p.feature_size(n_lead)}, the error {error.shape[-1]}; identity "
                         "feedback needs equal widths (use a random projector).")
      own = p.unstacked_shape
      e = pool_error(error, p.pooled).reshape(own[:n_lead] + (1,) * p.pooled
                                              + own[n_lead + p.pooled:])
      out.append(jnp.broadcast_to(e, p.shape).astype(p.dtype))
    return out

  return projector
