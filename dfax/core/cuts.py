"""What a cut is: ``stop_gradient`` while recording, a probe under ``dfax.testing``, and
the regions that train by exact backprop instead (``dfax.exact``, ``dfax.exact_boundary``).
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Callable, Iterator

import jax

from dfax.core import lifted
from dfax.core.outputs import map_float_leaves


def _stop(x, name: str):
  del name
  return jax.lax.stop_gradient(x)


_CUT: contextvars.ContextVar = contextvars.ContextVar("dfax_cut", default=_stop)
_EXACT: contextvars.ContextVar = contextvars.ContextVar("dfax_exact", default=False)


def cut_value(x, name: str):
  """Applies the cut at point ``name``: ``stop_gradient`` unless probing."""
  return _CUT.get()(x, name)


@contextlib.contextmanager
def exact(when: Any = None) -> Iterator[None]:
  """Module calls in this block train by exact backprop: no cut, no output of their own.

  Inside ``dfa_grad``, a top-level ``apply`` is an *output*: the error is
  taken at what it returns and its feedback points receive that error's
  projection. Calls made inside ``with dfax.exact():`` are neither cut nor
  tapped: they are part of the loss, like the segment after the last cut,
  and pass the true cotangent back to whatever produced their inputs.
  Outside ``dfa_grad`` it changes nothing.

  Args:
    when: ``None`` (always), or a boolean scalar, possibly traced (e.g. from
      a layer index inside ``nn.scan``): where it is false the calls are cut
      as usual; where it is true their cuts pass the exact cotangent through
      and their points receive no feedback. The points are still made (one
      per layer of a scan), so every layer has the same structure.

  Examples:
    A head applied after the body: the error is taken at the body's output
    (``dL/dh``), the head trains on its exact gradient.

    >>> import jax, jax.numpy as jnp, flax.linen as nn, dfax
    >>> body, head = nn.Sequential([nn.Dense(8), nn.tanh, nn.Dense(8)]), nn.Dense(3)
    >>> x = jnp.ones((4, 5))
    >>> pb, ph = body.init(jax.random.key(0), x), head.init(jax.random.key(1), jnp.ones((4, 8)))
    >>> def loss_fn(params):
    ...   h = body.apply(params[0], x)            # the output: its error is dL/dh
    ...   with dfax.exact():
    ...     return head.apply(params[1], h).sum()
    >>> grads = dfax.dfa_grad(loss_fn)((pb, ph))
    >>> bool(jnp.allclose(grads[1]["params"]["kernel"],
    ...                   jax.grad(loss_fn)((pb, ph))[1]["params"]["kernel"]))
    True
  """
  token = _EXACT.set(True if when is None else when)
  try:
    yield
  finally:
    _EXACT.reset(token)


def exact_boundary(x: Any, when: Any, name: str = "exact_boundary") -> Any:
  """Where ``when``, ``x`` enters an exact region: a feedback point, so no exact gradient passes.

  The exact cotangent that a region inside ``dfax.exact(when=...)`` sends
  back to its input would otherwise reach the DFA-trained layers below
  through uncut paths (a residual stream), mixing backprop into them. Here
  that cotangent stops, and ``x`` is a feedback point instead, so the last
  DFA-trained layer still learns what it feeds only to the exact region. The
  feedback enters ``x`` through a parameter-free normalisation of its last
  axis, as a pre-LN residual stream gets its feedback through the
  LayerNorms that read it: sent into the raw stream, the boundary's
  feedback outweighs every other point's below it (measured on the 8-block
  LM of ``benchmarks/lm_depth.py``, it made the hybrid worse than pure DFA).
  Where ``when`` is false the point exists (one per layer of a scan, as every
  layer has the same structure) but passes the cotangent through and
  receives no feedback. Outside ``dfa_grad`` this is the identity.

  Args:
    x: a pytree of arrays, the region's input.
    when: a boolean scalar, possibly traced (e.g. ``layer == first``).
    name: the point's name (its path, by which the projector keys its
      matrix); unique among the model's points. Several float leaves get
      ``name/0``, ``name/1``, ...

  Returns:
    ``x``, cut (with feedback) where ``when`` is true under ``dfa_grad``.
  """
  recorder = lifted.active_recorder()
  if recorder is None:
    return x
  return map_float_leaves(x, name, lambda leaf, leaf_name: recorder.boundary_cut(
      leaf, when, leaf_name), sep="/")[0]


@contextlib.contextmanager
def cutting(cut: Callable[[Any, str], Any]) -> Iterator[None]:
  """Replaces the cut ``stop_gradient`` by ``cut(x, name)`` (for dfax.testing)."""
  token = _CUT.set(cut)
  try:
    yield
  finally:
    _CUT.reset(token)
