"""Layer-parallel DFA backward for a scanned stack whose every block is cut.

When a feedback point sits at the output of every block of a scanned stack
(``dfax.models.presets.macro_out``, or ``StackConfig(cut="block")``), block
``l`` gets its cotangent ``B_l e`` straight from the output error and passes
nothing to block ``l - 1``: the blocks' backwards are independent. ``jax.grad``
of the scanned forward (what ``dfax.dfa_grad`` does today) still runs them
as a reverse scan, one layer after another. ``LayerStack`` keeps each block's
pullback from the forward scan (``dfax.parallel.residuals``) and replays all
of them at once under ``jax.vmap`` (``mode="vmap"``) or one by one under a
reverse ``jax.lax.scan`` (``mode="scan"``, same arithmetic, for comparison and
for when the vmapped backward's working memory, ``L`` layers' intermediates at
once, does not fit). Block 0 is differentiated with respect to its input too
(its input is not cut: the embedding trains through it); the others only with
respect to their parameters.

Examples:
  >>> import jax.numpy as jnp
  >>> block = lambda p, h: jnp.tanh(h @ p)        # block(p, h) -> h
  >>> params, x = jnp.ones((3, 4, 4)) * 0.1, jnp.ones((2, 4))   # L = 3 layers
  >>> stack = LayerStack(block)
  >>> ys, stored = stack.forward(params, x)       # ys: (L, ...) block outputs
  >>> cots = jnp.ones_like(ys)                    # (L, ...), e.g. B_l e per layer
  >>> grads, dx = stack.backward(params, stored, cots, mode="vmap")
  >>> ys.shape, grads.shape, dx.shape
  ((3, 2, 4), (3, 4, 4), (2, 4))
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from dfax.parallel.residuals import Pullback, replay, split_vjp

MODES = ("vmap", "scan")


def _check_mode(mode: str) -> None:
  if mode not in MODES:
    raise ValueError(f"dfax.parallel.layer_parallel: mode must be one of {MODES}, got {mode!r}.")


def _layer(tree, index):
  return jax.tree.map(lambda a: a[index], tree)


class LayerStack:
  """The forward and the cut backward of ``L`` stacked applications of one block.

  Args:
    block: ``block(params_l, h) -> h`` for one layer's params (leading layer
      axis removed); input and output have the same shape.
  """

  def __init__(self, block: Callable[[Any, jax.Array], jax.Array]):
    self.block = block
    self._first, self._rest = Pullback(), Pullback()

  def forward(self, params, x: jax.Array) -> tuple[jax.Array, dict]:
    """Runs the stack and keeps every block's pullback.

    Args:
      params: a pytree of arrays with a leading layer axis ``L``.
      x: the stack's input.

    Returns:
      ``(outputs, stored)``: every block's output, stacked ``(L,) + x.shape``
      (the last is the stack's output), and the arrays ``backward`` needs.
    """
    num_layers = jax.tree.leaves(params)[0].shape[0]
    y0, first = split_vjp(self.block, _layer(params, 0), x, pullback=self._first)
    if num_layers == 1:
      return y0[None], {"first": first, "rest": []}
    rest_params = jax.tree.map(lambda a: a[1:], params)

    def body(h, p):
      y, stored = split_vjp(lambda q: self.block(q, h), p, pullback=self._rest)
      return y, (y, stored)

    _, (ys, rest) = jax.lax.scan(body, y0, rest_params)
    return jnp.concatenate([y0[None], ys]), {"first": first, "rest": rest}

  def backward(self, params, stored: dict, cotangents: jax.Array,
               mode: str = "vmap") -> tuple[Any, jax.Array]:
    """Every block's gradient from the cotangent at its own output.

    Args:
      params: as given to ``forward``.
      stored: ``forward``'s second output.
      cotangents: ``(L,) + x.shape``, the cotangent of each block's output.
      mode: ``"vmap"`` (all layers at once) or ``"scan"`` (a reverse scan).

    Returns:
      ``(grads, dx)``: gradients stacked like ``params``, and the cotangent of
      the stack's input (from block 0 only: the other inputs are cut).
    """
    _check_mode(mode)
    g0, dx = replay(self._first, _layer(params, 0), stored["first"], cotangents[0])
    if not stored["rest"]:
      return jax.tree.map(lambda a: a[None], g0), dx
    rest_params = jax.tree.map(lambda a: a[1:], params)
    one = lambda p, s, c: replay(self._rest, p, s, c)[0]
    if mode == "vmap":
      g_rest = jax.vmap(one)(rest_params, stored["rest"], cotangents[1:])
    else:
      _, g_rest = jax.lax.scan(lambda _, a: (None, one(*a)), None,
                               (rest_params, stored["rest"], cotangents[1:]), reverse=True)
    return jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), g0, g_rest), dx


def cut_stack(block: Callable[[Any, jax.Array], jax.Array], params, x: jax.Array) -> jax.Array:
  """Every block's output of the stack with a DFA cut after each block.

  ``jax.vjp`` of this function with the per-block cotangents gives the same
  gradients as ``LayerStack.backward``, computed as ``dfax.dfa_grad`` does
  today: a reverse scan.

  Examples:
    >>> block = lambda p, h: jnp.tanh(h @ p)
    >>> cut_stack(block, jnp.ones((3, 4, 4)), jnp.ones((2, 4))).shape
    (3, 2, 4)
  """

  def body(h, p):
    y = block(p, h)
    return jax.lax.stop_gradient(y), y

  _, ys = jax.lax.scan(body, x, params)
  return ys


def reverse_scan_grads(block: Callable, params, x: jax.Array, cotangents: jax.Array):
  """``(grads, dx)`` of ``cut_stack`` by ``jax.vjp``: the reverse-scan baseline."""
  _, vjp_fn = jax.vjp(lambda p, h: cut_stack(block, p, h), params, x)
  return vjp_fn(cotangents)


def layer_parallel_grads(block: Callable, params, x: jax.Array,
                         feedback: Callable[[jax.Array], jax.Array], mode: str = "vmap"):
  """Forward, then the layer-parallel backward, in one call.

  Args:
    block: ``block(params_l, h) -> h``.
    params: stacked params, leading layer axis.
    x: the stack's input.
    feedback: ``outputs (L, ...) -> cotangents (L, ...)``; in DFA the
      projections of the output error (computed from the outputs, e.g. by the
      head and loss that follow).
    mode: ``"vmap"`` or ``"scan"``.

  Returns:
    ``(outputs, grads, dx)``.

  Examples:
    >>> block = lambda p, h: jnp.tanh(h @ p)
    >>> ys, g, dx = layer_parallel_grads(block, jnp.ones((3, 4, 4)), jnp.ones((2, 4)),
    ...                                  lambda ys: jnp.ones_like(ys))
    >>> g.shape, dx.shape
    ((3, 4, 4), (2, 4))
  """
  _check_mode(mode)
  stack = LayerStack(block)
  ys, stored = stack.forward(params, x)
  grads, dx = stack.backward(params, stored, feedback(ys), mode=mode)
  return ys, grads, dx
