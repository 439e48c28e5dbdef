"""The projector contract: what ``dfa_grad`` calls with the output error."""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import jax

from dfax.core.points import PointSpec


@runtime_checkable
class Projector(Protocol):
  """``projector(error, points) -> cotangents``: the feedback of one DFA step.

  ``dfa_grad`` calls the projector once per trace, inside the backward pass,
  with the output error and a description of every feedback point, and gives
  each point the cotangent returned for it.

  Args of ``__call__``:
    error: ``dL/dy`` at the model output ``y`` (the logits, or the leaf
      ``output=`` names), shape ``lead + (n_out,)``: ``lead`` holds the
      example dims (and the token dims of a sequence model), e.g.
      ``(batch, n_out)`` or ``(batch, tokens, vocab)``. Its dtype is the
      output's.
    points: one :class:`dfax.PointSpec` per point, in a fixed order: its
      ``path`` (stable across traces; the built-ins key their matrices by
      it), its full ``shape`` and ``dtype``, ``stack_ndim`` leading dims of
      stacked copies (the layers of an ``nn.scan``, each a distinct point)
      and ``pooled`` token dims it does not share with the error.

  Returns of ``__call__``:
    A list or tuple with one floating array per point, each of exactly its
    point's ``shape`` (``dfa_grad`` casts it to the point's dtype and raises
    a ``ValueError`` naming the point otherwise).

  A projector must be a pure function of its inputs and of what it closed
  over: it is traced under ``jit``, ``vmap``, ``scan`` and ``shard_map``, and
  called again on every trace. The built-in projectors take a PRNG key at
  construction and regenerate their random matrices from it on every call
  (nothing is stored), so equal keys give equal feedback. Options are
  checked when a projector is built, not when it is traced.

  Examples:
    >>> import jax, jax.numpy as jnp, dfax
    >>> def sign_feedback(error, points):      # a projector need not be random
    ...   return [jnp.broadcast_to(jnp.sign(error.sum(-1)).reshape(
    ...       error.shape[:1] + (1,) * (len(p.shape) - 1)), p.shape) for p in points]
    >>> isinstance(sign_feedback, dfax.Projector)
    True
    >>> isinstance(dfax.projectors.gaussian(jax.random.key(0)), dfax.Projector)
    True
  """

  def __call__(self, error: jax.Array,
               points: Sequence[PointSpec]) -> Sequence[jax.Array]:
    ...
