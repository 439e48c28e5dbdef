"""Descriptions of feedback points, as handed to a projector."""

from __future__ import annotations

import dataclasses
import math
from typing import Any



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

  Example::

    >>> spec = PointSpec("Dense_1/in", (4, 8, 32), "float32", stack_ndim=1)
    >>> spec.stack_shape, spec.num_copies
    ((4,), 4)
  """

  path: str
  shape: tuple[int, ...]
  dtype: Any
  stack_ndim: int = 0

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
    """Per-example size once ``num_lead_dims`` batch/token dims are removed."""
    return math.prod(self.unstacked_shape[num_lead_dims:])


def check_lead_dims(error_shape: tuple[int, ...], spec: PointSpec) -> int:
  """Returns the number of leading (batch/token) dims shared by error and point.

  The error's leading dims (all but its last) must prefix the point's own
  (unstacked) shape: the projection is applied per example/token.

  Raises:
    ValueError: naming the shapes and the fix, when they do not line up.
  """
  lead = tuple(error_shape[:-1])
  own = spec.unstacked_shape
  if own[: len(lead)] != lead or len(own) == len(lead):
    raise ValueError(
        f"dfax: feedback point {spec.path!r} has shape {own}, which does not "
        f"start with the output error's leading dims {lead} (error shape "
        f"{tuple(error_shape)}). DFA projects the error per example/token, so "
        "every feedback point must keep the batch (and token) dims of the "
        "model output. Select points before any pooling over tokens, or use a "
        "projector that handles this layout.")
  return len(lead)

