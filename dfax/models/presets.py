"""Feedback presets for the Transformer LM and ViT: where the DFA cuts go.

* ``macro``: one point per block, at its input (Launay et al. 2020's DFA for
  Transformers); the last block, the final LayerNorm and the head form the tail.
* ``micro``: three points per block: after attention + residual, after the
  MLP hidden layer, and at the block output.

Example::

  grads = dfax.dfa_grad(loss_fn, feedback=presets.macro(model))(params, x, y)
"""

from __future__ import annotations

from typing import Any, Callable

from dfax.core.selection import FeedbackPoint

MICRO_MARKERS = ("attn_res", "mlp_hidden", "out")


def macro(model: Any) -> tuple[type, ...]:
  """Cut in front of every Transformer block (the LM's and the ViT's share ``Block``)."""
  del model
  from dfax.models.transformer import Block  # noqa: PLC0415
  return (Block,)


def micro(model: Any) -> Callable[[Any, tuple], bool]:
  """Cut after attention + residual, after the MLP hidden layer, at block output."""
  del model

  def predicate(module, path) -> bool:
    return isinstance(module, FeedbackPoint) and path and path[-1] in MICRO_MARKERS

  return predicate
