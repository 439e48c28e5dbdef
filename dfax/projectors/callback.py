"""Projectors computed outside JAX, e.g. by a real optical device's driver.

Two kinds of host code can sit behind ``dfax.dfa_grad``:

* a **device** that projects a batch of rows at once onto ``total`` outputs
  (an OPU: one pass covers every point): :func:`host_device` lays the points
  out in its columns (``dfax.projectors.layout``) and calls it through
  :func:`columns_on_host`, the one callback such devices go through (the
  lightonml backend too);
* a **per-point function** that builds each point's cotangent itself:
  :func:`host_projector`.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dfax.core.points import PointSpec
from dfax.projectors import layout as layout_lib
from dfax.projectors.per_point import check_feature_ndim

RowsOnHost = Callable[[np.ndarray, int], np.ndarray]


def columns_on_host(project_rows: RowsOnHost, rows: jax.Array, total: int, *,
                    dtype=jnp.float32, vmap_method: str = "sequential") -> jax.Array:
  """``project_rows(rows, total)`` run on the host from traced code (``jax.pure_callback``).

  Args:
    project_rows: ``(rows: np.ndarray (N, n), total) -> (N, total)``; a pure
      function of its inputs (a device with a fixed medium qualifies).
    rows: the ``(N, n)`` rows to send (error rows, or a device's input frames).
    total: the number of output columns.
    dtype: the result's dtype.
    vmap_method: passed to ``jax.pure_callback`` for use under ``jax.vmap``.

  Returns:
    The ``(N, total)`` result, as a JAX array of ``dtype``.
  """
  shape = jax.ShapeDtypeStruct((rows.shape[0], total), dtype)

  def host(r):
    out = np.asarray(project_rows(np.asarray(r), total), dtype=shape.dtype)
    if out.shape != shape.shape:
      raise ValueError(f"dfax: the host device returned shape {out.shape}; expected "
                       f"{shape.shape} (rows, total columns).")
    return out

  return jax.pure_callback(host, shape, rows, vmap_method=vmap_method)


def host_device(project_rows: RowsOnHost, *, tie_copies: bool = False,
                feature_ndim: int | None = None, vmap_method: str = "sequential"):
  """A projector whose one pass runs on a host device: all points in one call.

  dfax stacks the error's rows (and the token-averaged rows pooled points
  read), asks the device for ``total`` columns, and hands each point its
  slice, laid out as the shared projector and the simulated OPU lay it out
  (``dfax.projectors.layout``).

  Args:
    project_rows: ``(rows: np.ndarray (N, n_out), total) -> (N, total)``,
      the device's projection; a pure function of its inputs.
    tie_copies, feature_ndim: the layout options (``dfax.projectors.layout``).
    vmap_method: passed to ``jax.pure_callback``.

  Returns:
    ``projector(error, points) -> list of arrays``.

  Examples:
    A stand-in device: a fixed seeded matrix, as wide as asked.

    >>> import flax.linen as nn, jax.numpy as jnp, dfax
    >>> def device(rows, total):
    ...   medium = np.random.default_rng(0).standard_normal((rows.shape[1], total))
    ...   return rows @ medium
    >>> model = nn.Sequential([nn.Dense(16), nn.tanh, nn.Dense(3)])
    >>> x = jnp.ones((4, 5))
    >>> params = model.init(jax.random.key(0), x)
    >>> loss_fn = lambda p: model.apply(p, x).sum()
    >>> grads = jax.jit(dfax.dfa_grad(loss_fn, projector=host_device(device)))(params)
    >>> grads["params"]["layers_0"]["kernel"].shape
    (5, 16)
  """
  check_feature_ndim(feature_ndim, "host_device")

  def projector(error, points):
    on_host = lambda rows, total: columns_on_host(project_rows, rows, total, dtype=error.dtype,
                                                  vmap_method=vmap_method)
    return layout_lib.project_once(error, points, on_host, tie_copies=tie_copies,
                                   feature_ndim=feature_ndim)

  return projector


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
