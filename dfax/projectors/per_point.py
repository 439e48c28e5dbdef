"""Applying a keyed projection to one feedback point: lead dims, layers, shared dims.

A per-point projector (dense, Hadamard) only has to say how it maps ``(N, n)``
error rows to ``(N, width)`` with a given key; ``project_point`` does the
rest: it checks the error's lead dims against the point, derives the point's
key from its path, gives each stacked copy (an ``nn.scan`` layer) its own key
or, when tied, one shared projection, and broadcasts over the point's dims
that get no columns of their own.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp

from dfax.core.points import PointSpec, check_lead_dims, pool_error
from dfax.projectors.keys import copy_keys, path_key

RowProjection = Callable[[jax.Array, jax.Array, int], jax.Array]


def check_feature_ndim(feature_ndim: int | None, who: str) -> None:
  """Raises a ValueError naming the fix unless ``feature_ndim`` is None or >= 1."""
  if feature_ndim is not None and feature_ndim < 1:
    raise ValueError(f"dfax.projectors.{who}: feature_ndim={feature_ndim} must be >= 1, or "
                     "None to give every dim after the error's lead dims its own columns.")


def kept_dims(spec: PointSpec, n_lead: int, feature_ndim: int | None) -> tuple[int, ...]:
  """The point's trailing dims that get their own columns (all after the lead dims if None).

  A pooled point's own token dims (``spec.pooled`` of them, right after the
  lead dims) never get columns: the projection is broadcast over them.
  """
  features = spec.unstacked_shape[n_lead + spec.pooled:]
  return features if feature_ndim is None else features[max(len(features) - feature_ndim, 0):]


def project_point(error: jax.Array, spec: PointSpec, key: jax.Array, rows: RowProjection, *,
                  tie_copies: bool = False, feature_ndim: int | None = None,
                  copies: jax.Array | None = None) -> jax.Array:
  """Projects ``error`` to one (possibly stacked) point.

  Args:
    error: output error, ``lead + (n_out,)``.
    spec: the point.
    key: the projector's key; the point's own key is ``path_key(key, spec.path)``.
    rows: ``(error2d (N, n_out), point_key, width) -> (N, width)``, the keyed
      projection itself.
    tie_copies: the copies of a stacked point (the layers of an ``nn.scan``)
      share one projection, computed once and broadcast; otherwise copy ``i``
      uses ``copy_keys(point_key, n)[i]``.
    feature_ndim: how many trailing dims of the point get their own columns;
      the dims between the error's lead dims and these (e.g. the tokens of a
      ViT whose error is per image) receive the same projection. ``None``:
      every dim after the lead dims. A pooled point (``spec.pooled``) gets
      the error averaged over its token dims (``pool_error``), projected per
      example and broadcast over the point's own token dims.
    copies: flat indices of the stacked copies to project (a pipeline stage
      computes only its own layers' feedback); ``None``: all of them.

  Returns:
    The cotangent, of shape ``spec.shape``; with ``copies``, of shape
    ``(len(copies),) + spec.unstacked_shape``, equal to those copies of the
    full cotangent.

  Examples:
    >>> from dfax import PointSpec
    >>> rows = lambda e, k, w: e @ jax.random.normal(k, (e.shape[-1], w))
    >>> spec = PointSpec("Dense_1/in", (4, 8), jnp.float32)
    >>> error = jnp.ones((4, 3))
    >>> project_point(error, spec, jax.random.key(0), rows, feature_ndim=1).shape
    (4, 8)
  """
  n_lead = check_lead_dims(error.shape, spec)
  error = pool_error(error, spec.pooled)
  own = spec.unstacked_shape
  features = own[n_lead:]
  kept = kept_dims(spec, n_lead, feature_ndim)
  width = math.prod(kept)
  error2d = error.reshape(-1, error.shape[-1])
  project = lambda k: rows(error2d, k, width)
  pkey = path_key(key, spec.path)
  shape = spec.shape if copies is None else (copies.shape[0],) + own
  if spec.stack_ndim and not tie_copies:
    keys = copy_keys(pkey, spec.num_copies)
    keys = keys if copies is None else keys[copies]
    out, stack = jax.vmap(project)(keys), shape[:len(shape) - len(own)]
  else:
    out, stack = project(pkey), (1,) * (len(shape) - len(own))
  shared_dims = (1,) * (len(features) - len(kept))
  return jnp.broadcast_to(out.reshape(stack + own[:n_lead] + shared_dims + kept), shape)


def per_point(rows: RowProjection, key: jax.Array, *, tie_copies: bool = False,
              feature_ndim: int | None = None,
              name: str = "per_point") -> Callable[[jax.Array, list], list]:
  """A projector from a keyed row projection: one projection per point, keyed by its path.

  The built-in per-point projectors (``dense``, ``hadamard``) are this
  function with their own ``rows``; a new keyed projection only has to say
  how it maps error rows to a point's columns.

  Args:
    rows: ``(error2d (N, n_out), point_key, width) -> (N, width)``, the keyed
      projection; called once per point (once per stacked copy unless tied).
    key: the projector's key; point ``p`` uses ``path_key(key, p.path)``.
    tie_copies, feature_ndim: see :func:`project_point`.
    name: the factory named in error messages (``dense`` for ``dense``).

  Returns:
    ``projector(error, points) -> list of cotangents``.

  Examples:
    >>> import dfax
    >>> def rademacher_rows(error2d, point_key, width):   # +-1/sqrt(n_out) entries
    ...   signs = jax.random.rademacher(point_key, (error2d.shape[-1], width), error2d.dtype)
    ...   return error2d @ signs / jnp.sqrt(error2d.shape[-1]).astype(error2d.dtype)
    >>> proj = dfax.projectors.per_point(rademacher_rows, jax.random.key(0))
    >>> [c.shape for c in proj(jnp.ones((4, 3)), [dfax.PointSpec("h", (4, 8), "float32")])]
    [(4, 8)]
  """
  check_feature_ndim(feature_ndim, name)

  def projector(error, points):
    return [project_point(error, p, key, rows, tie_copies=tie_copies, feature_ndim=feature_ndim)
            for p in points]

  return projector
