"""The control projector: no feedback at all, so only the tail learns.

With ``zeros()`` every feedback point receives a zero cotangent: the segment
after the last cut (under the Transformer's macro preset: the last block, the
final LayerNorm and the head) trains with its exact gradient and everything
before it gets exactly no gradient. Comparing DFA against this control shows
what the random feedback adds on top of the exactly trained tail, which the
"shallow" baseline (last layer only) does not.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp

from dfax.core.points import PointSpec, check_lead_dims


def zeros() -> Callable[[jax.Array, Sequence[PointSpec]], list]:
  """A projector that returns zeros of each point's shape and dtype.

  Returns:
    ``projector(error, points) -> list of zero cotangents``.

  Example::

    grads = dfax.dfa_grad(loss_fn, projector=dfax.projectors.zeros())(params, x, y)
  """

  def projector(error, points):
    for p in points:
      check_lead_dims(error.shape, p)
    return [jnp.zeros(p.shape, p.dtype) for p in points]

  return projector
