"""Descriptions of feedback points, as handed to a projector."""

from __future__ import annotations

import dataclasses
import math
from typing import Any


# The name a cut made inside an NNX transform (nnx.scan, nnx.vmap, nnx.remat) carries while
# the loss runs: its point's path is learnt only once its value has left the transform.
IN_NNX_TRANSFORM = "<inside an NNX transform>/"


@dataclasses.dataclass(frozen=True)
class PointSpec:
  """What a projector knows about one feedback point.

  Attributes:
    path: stable name of the point, e.g. ``"Dense_1/in"``; the built-in
      projectors key their random matrices by it.
    shape: full shape of the cotangent the projector must return.
    dtype: dtype of the value at the point (the cotangent is cast to it).
    stack_ndim: number of leading dims that stack copies of the point, e.g. 1
      for a point inside ``nn.scan`` (one copy per layer). Each copy is a
      distinct point with its own random matrix.
    pooled: number of token dims the point does *not* share with the output
      error (set by ``dfax.pooled`` / ``dfax.encoder_decoder``). 0 (default):
      the point lives on the error's tokens and is paired with it token by
      token. ``k >= 1``: e.g. an encoder point ``(batch, source, d)`` while
      the error is ``(batch, target, vocab)``: the error is averaged over its
      last ``k`` lead (token) dims, projected per example, and the result is
      broadcast over the point's own ``k`` token dims (those right after the
      example dims). See ``pool_error``.

  Examples:
    >>> spec = PointSpec("Dense_1/in", (4, 8, 32), "float32", stack_ndim=1)
    >>> spec.stack_shape, spec.num_copies
    ((4,), 4)
    >>> enc = PointSpec("encoder/ln/out", (2, 12, 16), "float32", pooled=1)
    >>> check_lead_dims((2, 8, 40), enc), enc.feature_size(1)  # batch shared; 16 columns
    (1, 16)
  """

  path: str
  shape: tuple[int, ...]
  dtype: Any
  stack_ndim: int = 0
  pooled: int = 0

  @property
  def stack_shape(self) -> tuple[int, ...]:
    return self.shape[: self.stack_ndim]

  @property
  def num_copies(self) -> int:
    return math.prod(self.stack_shape)

  @property
  def unstacked_shape(self) -> tuple[int, ...]:
    return self.shape[self.stack_ndim :]

  def feature_size(self, num_lead_dims: int) -> int:
    """Per-example size once the lead (example/token) dims and own token dims are removed.

    Args:
      num_lead_dims: the dims shared with the error, as ``check_lead_dims``
        returns them; a pooled point's own token dims follow them and are
        not counted either.

    Returns:
      The number of columns the point needs from a projection.
    """
    return math.prod(self.unstacked_shape[num_lead_dims + self.pooled:])


def pool_error(error, pooled: int):
  """The output error as a ``pooled`` point sees it: averaged over its last ``pooled`` lead dims.

  Args:
    error: the output error, ``lead + (n_out,)``.
    pooled: ``PointSpec.pooled``; 0 returns ``error`` unchanged.

  Returns:
    ``error`` with its token dims ``lead[-pooled:]`` averaged away.

  Examples:
    >>> import jax.numpy as jnp
    >>> pool_error(jnp.ones((2, 8, 40)), 1).shape
    (2, 40)
  """
  if not pooled:
    return error
  if error.ndim - 1 < pooled:
    raise ValueError(_too_few_token_dims(error.shape, pooled))
  return error.mean(axis=tuple(range(error.ndim - 1 - pooled, error.ndim - 1)))


def check_lead_dims(error_shape: tuple[int, ...], spec: PointSpec) -> int:
  """Returns the number of leading (example/token) dims shared by error and point.

  For an ordinary point (``spec.pooled == 0``) the error's leading dims (all
  but its last) must prefix the point's own (unstacked) shape: the
  projection is applied per example/token. For a pooled point the error's
  last ``spec.pooled`` lead dims are averaged first (``pool_error``): only
  the remaining example dims must prefix the point, followed by the point's
  own ``spec.pooled`` token dims (any length) and at least one feature dim.

  Args:
    error_shape: shape of the output error.
    spec: the point.

  Returns:
    How many of the point's leading dims are the (pooled) error's lead dims.

  Raises:
    ValueError: naming the shapes and the fix, when they do not line up.
  """
  lead = tuple(error_shape[:-1])
  own = spec.unstacked_shape
  if spec.pooled:
    if len(lead) < spec.pooled:
      raise ValueError(_too_few_token_dims(error_shape, spec.pooled))
    lead = lead[:len(lead) - spec.pooled]
    if own[:len(lead)] != lead or len(own) <= len(lead) + spec.pooled:
      raise ValueError(
          f"dfax: pooled feedback point {spec.path!r} has shape {own}; it must start with "
          f"the output error's example dims {lead} (error shape {tuple(error_shape)}), then "
          f"its own {spec.pooled} token dim(s), then features. Select points that keep "
          "the batch dims, or change token_ndim in dfax.pooled(...).")
    return len(lead)
  if own[: len(lead)] != lead or len(own) == len(lead):
    hint = ("If the point lives on other tokens than the output (an encoder's source "
            "tokens while the error is on target tokens), select it with "
            "dfax.encoder_decoder(...) or dfax.pooled(...); otherwise select points before "
            "any pooling over tokens.")
    raise ValueError(
        f"dfax: feedback point {spec.path!r} has shape {own}, which does not "
        f"start with the output error's leading dims {lead} (error shape "
        f"{tuple(error_shape)}). DFA projects the error per example/token, so "
        f"every feedback point must keep the batch (and token) dims of the "
        f"model output. {hint}")
  return len(lead)


def _too_few_token_dims(error_shape, pooled: int) -> str:
  return (f"dfax: a point pooled over {pooled} token dim(s) needs an output error with that "
          f"many dims in front of its last; got shape {tuple(error_shape)}. Use "
          "dfax.pooled(..., token_ndim=k) with a smaller k.")
