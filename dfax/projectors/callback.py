"""A projector computed outside JAX, e.g. by a real optical device's driver."""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import numpy as np

from dfax.core.points import PointSpec


def host_projector(project_on_host: Callable[[np.ndarray, Sequence[PointSpec]], Sequence],
                   *, vmap_method: str = "sequential"):
  """Wraps a host (numpy) function as a projector through ``jax.pure_callback``.

  The host function receives the output error as a numpy array and the point
  descriptions, and returns one numpy array per point with exactly the
  point's shape. This is how a physical device (an OPU behind its Python
  driver) is put behind ``dfax.dfa_grad``: the rest of training stays jitted.
  A point with ``pooled > 0`` (an encoder's, see ``dfax.encoder_decoder``)
  expects the error averaged over its token dims
  (``dfax.core.points.pool_error``), projected per example and broadcast over
  its own tokens, as the built-in projectors give it.

  Args:
    project_on_host: ``(error: np.ndarray, points) -> list of np.ndarray``;
      must be a pure function of its inputs for ``pure_callback``'s contract
      (a device with fixed transmission matrix and seeded noise qualifies).
    vmap_method: passed to ``jax.pure_callback`` for use under ``jax.vmap``.

  Returns:
    ``projector(error, points) -> list of arrays``.

  Examples:
    A host function standing in for a device driver (a fixed random matrix
    in numpy):

    >>> import flax.linen as nn, jax.numpy as jnp, dfax
    >>> rng = np.random.default_rng(0)
    >>> def driver(error, points):            # runs on the host, outside jit
    ...   return [error @ rng.standard_normal((error.shape[-1],) + p.shape[1:]).astype(error.dtype)
    ...           for p in points]
    >>> model = nn.Sequential([nn.Dense(16), nn.tanh, nn.Dense(3)])
    >>> x = jnp.ones((4, 5))
    >>> params = model.init(jax.random.key(0), x)
    >>> loss_fn = lambda p: model.apply(p, x).sum()
    >>> grads = jax.jit(dfax.dfa_grad(loss_fn, projector=host_projector(driver)))(params)
    >>> grads["params"]["layers_0"]["kernel"].shape
    (5, 16)
  """

  def projector(error, points):
    points = tuple(points)
    shapes = [jax.ShapeDtypeStruct(p.shape, error.dtype) for p in points]

    def host(e):
      out = project_on_host(np.asarray(e), points)
      return [np.asarray(c, dtype=e.dtype).reshape(p.shape) for c, p in zip(out, points)]

    return list(jax.pure_callback(host, shapes, error, vmap_method=vmap_method))

  return projector
