"""Checking the DFA plumbing on any model: the oracle projector.

A projector that hands every feedback point its *true* backprop cotangent
turns DFA back into backprop: with it, ``dfax.dfa_grad`` must reproduce
``jax.grad`` for every parameter. That proves, on a model nobody here wrote,
that the cuts sit where they should, that the tail is exact and that each
segment's local backward is complete.

``oracle_projector`` finds the true cotangents by running the gradient once,
compiled, with every cut replaced by an identity whose backward passes the
cotangent arriving from downstream through a host callback that records it:
once per layer inside ``nn.scan``, once per element inside ``nn.vmap``, once
inside ``nn.remat``/``jax.checkpoint``.

Limit, raised as a ``NotImplementedError`` that says so: a point made inside
an NNX transform (``nnx.scan``, ``nnx.vmap``, ``nnx.remat``) is named only
once its value has left the transform, after its cotangent was recorded.
Check such models through an equivalent with the layers in a Python loop.
"""

from __future__ import annotations

import collections
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dfax.core.points import IN_NNX_TRANSFORM, PointSpec
from dfax.core.cuts import cutting
from dfax.core.tap import Projector


def _zeros(error, points):
  del error
  return [jnp.zeros(p.shape, p.dtype) for p in points]


def _recording_identity(name: str, store: dict):
  @jax.custom_vjp
  def probe(x):
    return x

  def bwd(_, ct):
    shape = ct.shape

    def record(found):
      # Under vmap the callback sees the whole batch (vmap_method="expand_dims"): one entry
      # per element, listed last to first as the backward pass lists layers.
      found = np.asarray(found)
      store[name].extend(reversed(list(found.reshape(-1, *shape))))
      return found

    # The cotangent goes through the callback, so the backward order orders the records.
    return (jax.pure_callback(record, jax.ShapeDtypeStruct(shape, ct.dtype), ct,
                              vmap_method="expand_dims"),)

  probe.defvjp(lambda x: (x, None), bwd)
  return probe


def true_cotangents(make_grad_fn: Callable[[Projector], Callable], *args,
                    **kwargs) -> dict[str, list[jax.Array]]:
  """The backprop cotangent at every feedback point, by point name.

  Args:
    make_grad_fn: ``projector -> gradient function``, e.g.
      ``lambda p: dfax.dfa_grad(loss_fn, projector=p, feedback=Block)``.
    *args, **kwargs: the arguments to call the gradient function with.

  Returns:
    ``{point name: [cotangent, ...]}``, one entry per time the point was cut,
    in the order the backward pass reached them.

  Raises:
    NotImplementedError: for points made inside an NNX transform (see the
      module docstring).

  Examples:
    >>> import jax, jax.numpy as jnp, flax.linen as nn, dfax
    >>> model = nn.Sequential([nn.Dense(4), nn.tanh, nn.Dense(2)])
    >>> x = jnp.ones((3, 5))
    >>> params = model.init(jax.random.key(0), x)
    >>> loss_fn = lambda p: model.apply(p, x).sum()
    >>> cts = true_cotangents(lambda p: dfax.dfa_grad(loss_fn, projector=p), params)
    >>> [(name, [c.shape for c in found]) for name, found in cts.items()]
    [('layers_2/in', [(3, 4)])]
  """
  store: dict[str, list] = collections.defaultdict(list)
  cut = lambda x, name: _recording_identity(name, store)(x)
  leaves, tree = jax.tree.flatten((args, kwargs))
  is_array = [isinstance(leaf, (jax.Array, np.ndarray)) for leaf in leaves]

  def gradient(arrays):  # the non-array arguments (flags, sizes) stay Python values
    given = iter(arrays)
    args, kwargs = jax.tree.unflatten(tree, [next(given) if array else leaf
                                             for leaf, array in zip(leaves, is_array)])
    return make_grad_fn(_zeros)(*args, **kwargs)

  with cutting(cut):
    jax.block_until_ready(jax.jit(gradient)([leaf for leaf, array in zip(leaves, is_array)
                                              if array]))
  inside = sorted({n[len(IN_NNX_TRANSFORM):].split("/")[0] for n in store
                   if n.startswith(IN_NNX_TRANSFORM)})
  if inside:
    raise NotImplementedError(
        f"dfax.testing: the oracle cannot check feedback points made inside an NNX "
        f"transform (here by {', '.join(inside)} under nnx.scan, nnx.vmap or nnx.remat): "
        "such a point is named only after its value leaves the transform, so its recorded "
        "cotangent cannot be matched to it. Check an equivalent model that calls the "
        "layers in a Python loop (e.g. an nnx.List) instead.")
  return dict(store)


def oracle_projector(make_grad_fn: Callable[[Projector], Callable], *args,
                     **kwargs) -> Projector:
  """A projector that returns each point's true backprop cotangent.

  The cotangents are those of these very arguments: use the projector with
  the same ``args`` only.

  Args:
    make_grad_fn: ``projector -> gradient function``, as for ``true_cotangents``.
    *args, **kwargs: the arguments the gradient function will be called with.

  Returns:
    ``projector(error, points)``: with it, the DFA gradient equals backprop's.

  Raises:
    NotImplementedError: where ``true_cotangents`` does.

  Examples:
    >>> import jax, jax.numpy as jnp, flax.linen as nn, dfax
    >>> model = nn.Sequential([nn.Dense(4), nn.tanh, nn.Dense(4), nn.tanh, nn.Dense(2)])
    >>> x = jnp.ones((3, 5))
    >>> params = model.init(jax.random.key(0), x)
    >>> loss_fn = lambda p: (model.apply(p, x) ** 2).sum()
    >>> make = lambda p: dfax.dfa_grad(loss_fn, projector=p)
    >>> oracle = dfax.testing.oracle_projector(make, params)
    >>> with jax.default_matmul_precision("highest"):
    ...   dfax.testing.assert_trees_close(make(oracle)(params), jax.grad(loss_fn)(params))
  """
  cts = true_cotangents(make_grad_fn, *args, **kwargs)

  def projector(error: jax.Array, points: Sequence[PointSpec]) -> list[jax.Array]:
    del error
    # The backward pass reaches points in reverse forward order.
    pending = {name: list(reversed(found)) for name, found in cts.items()}
    out = []
    for spec in points:
      found = pending.get(spec.path)
      n = spec.num_copies
      if not found or len(found) < n:
        raise KeyError(f"dfax.testing: no recorded cotangent for point {spec.path!r}; "
                       f"recorded: {sorted(cts)}.")
      taken, pending[spec.path] = found[:n], found[n:]
      value = taken[0] if spec.stack_ndim == 0 else jnp.stack(taken).reshape(spec.shape)
      out.append(value.astype(spec.dtype))
    return out

  return projector


def assert_trees_close(actual: Any, expected: Any, rtol: float = 1e-5,
                       atol: float = 1e-6) -> None:
  """Asserts two pytrees have the same structure and close leaves, naming a path."""
  flat_a, tree_a = jax.tree_util.tree_flatten_with_path(actual)
  flat_e, tree_e = jax.tree_util.tree_flatten_with_path(expected)
  if tree_a != tree_e:
    raise AssertionError(f"tree structures differ:\n{tree_a}\n{tree_e}")
  for (path, a), (_, e) in zip(flat_a, flat_e):
    a, e = jnp.asarray(a, jnp.float32), jnp.asarray(e, jnp.float32)
    if not jnp.allclose(a, e, rtol=rtol, atol=atol):
      err = float(jnp.max(jnp.abs(a - e)))
      raise AssertionError(f"{jax.tree_util.keystr(path)}: max abs difference {err:.3g} "
                           f"(scale {float(jnp.max(jnp.abs(e))):.3g})")
