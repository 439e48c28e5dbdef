"""Feedback presets for the Transformer LM and ViT: where the DFA cuts go.

* ``macro``: one point per block, at its input; the embeddings are a segment
  of their own, and the last block, the final LayerNorm and the head form the
  tail that trains exactly.
* ``macro_out``: one point per block, at its output (``dfax.after(Block)``):
  the layout of Launay et al. 2020's TinyDFA Transformer. The embeddings train through the first
  block (by backprop from its feedback), the last block from feedback too;
  only what follows the last block (final LayerNorm if any, head) is exact.
  With post-LN blocks (``TransformerConfig(norm="post")``, also theirs) this
  is the layout under which DFA trains the Shakespeare LM far beyond its
  zero-feedback control; see docs/feedback_points.md.
* ``after_ln``: one point at the output of every normalisation layer
  (``dfax.after(dfax.is_norm_layer)``: Flax's LayerNorm, RMSNorm, GroupNorm
  and InstanceNorm and foreign ones such as HF's ``FlaxLlamaRMSNorm`` or
  ``FlaxT5LayerNorm``, by class name; see ``dfax.is_norm_layer``): the
  normalised copies of the residual stream that the sublayers and the head
  read. With pre-LN blocks a cut after the block sits on the raw residual
  stream, which DFA pushes along its feedback without bound (the final
  LayerNorm hides its scale from the loss). Cutting after the norms instead,
  each sublayer's parameters train
  from the feedback of every norm downstream of it, pulled back through those
  norms' Jacobians and the residual additions only (never through another
  sublayer), and the stream stays bounded. The layout that learns on pre-LN
  Transformers (dfax's and HF's GPT-2); see docs/feedback_points.md.
* ``after_ln_head``: ``after_ln`` plus a cut in front of the output layer
  (the module named ``head``), so that a hidden layer between the final
  LayerNorm and the head (the ViT's ``pre_logits``) trains from its own
  feedback, as every hidden layer of Nøkland's DFA MLP does; only the head
  is exact. The ViT config's layout (docs/results_vision.md).
* ``after_block_ln``: ``after_ln`` without the cut after the final LayerNorm
  (``ln_final``). Not a pure DFA layout: the raw residual stream is never cut,
  so the head's exact error reaches every sublayer through the residual
  additions and adds to the feedback; even with zero feedback every block
  learns. An ablation (docs/results_vision.md), not a default.
* ``markers``: only the model's own ``dfax.FeedbackPoint`` markers (e.g. the
  stage outputs of ``dfax.models.stack.StackedMLP``, the points its
  pipeline uses).
* ``micro``: three points per block: after attention + residual, after the
  MLP hidden layer, and at the block output.
* ``sublayer``: ``macro`` plus a point at each sublayer's normalised input (in
  front of the attention and of the MLP's first layer). No cotangent then
  flows back through the QKV or ``fc1`` matmuls or through a LayerNorm, which
  makes it the cheapest preset; each LayerNorm trains from its own feedback.

Examples:
  >>> import jax, jax.numpy as jnp, dfax
  >>> from dfax.models import TransformerConfig, TransformerLM, presets
  >>> config = TransformerConfig(vocab_size=16, d_model=8, num_heads=2, num_layers=2, d_ff=16,
  ...                            max_len=8)
  >>> model = TransformerLM(config)
  >>> tokens = jnp.zeros((2, 8), jnp.int32)
  >>> params = model.init(jax.random.key(0), tokens)
  >>> loss_fn = lambda p: model.apply(p, tokens).mean()
  >>> grad_fn = dfax.dfa_grad(loss_fn, feedback=presets.macro())
  >>> grads = jax.eval_shape(grad_fn, params)   # traced, not run: shapes only
  >>> jax.tree.structure(grads) == jax.tree.structure(params)
  True
"""

from __future__ import annotations

from typing import Any, Callable

from dfax.core.selection import After, FeedbackPoint, after, by_name, is_norm_layer

MICRO_MARKERS = ("attn_res", "mlp_hidden", "out")
SUBLAYER_INPUTS = ("attn", "fc1")


def macro() -> tuple[type, ...]:
  """Cut in front of every Transformer block (the LM's and the ViT's share ``Block``)."""
  from dfax.models.transformer import Block  # noqa: PLC0415
  return (Block,)


def macro_out() -> After:
  """Cut after every Transformer block: ``dfax.after(Block)``, no marker needed."""
  from dfax.models.transformer import Block  # noqa: PLC0415
  return after(Block)


def after_ln() -> After:
  """Cut after every normalisation layer (``dfax.is_norm_layer``), for pre-LN stacks.

  Returns:
    ``dfax.after(dfax.is_norm_layer)``.

  Examples:
    >>> from dfax.models import presets
    >>> import dfax
    >>> presets.after_ln() == dfax.after(dfax.is_norm_layer)
    True
  """
  return after(is_norm_layer)


def after_ln_head() -> tuple:
  """``after_ln`` plus a cut in front of the top-level module named ``head``."""
  return (after_ln(), by_name("head"))


def after_block_ln() -> After:
  """Cut after every norm layer except ``ln_final``: DFA plus the residual path.

  Every sublayer's gradient is then the feedback pulled back from the norms
  downstream of it plus the exact gradient along the residual stream to the
  head, which no cut interrupts.
  """

  def predicate(module, path) -> bool:
    return is_norm_layer(module, path) and path[-1:] != ("ln_final",)

  return after(predicate)


def micro() -> Callable[[Any, tuple], bool]:
  """Cut after attention + residual, after the MLP hidden layer, at block output."""

  def predicate(module, path) -> bool:
    return isinstance(module, FeedbackPoint) and path and path[-1] in MICRO_MARKERS

  return predicate


def sublayer() -> Callable[[Any, tuple], bool]:
  """Cut in front of every block, its attention and its MLP's first layer."""
  from dfax.models.transformer import Block  # noqa: PLC0415

  def predicate(module, path) -> bool:
    return isinstance(module, Block) or bool(path) and path[-1] in SUBLAYER_INPUTS

  return predicate


def markers() -> tuple[type, ...]:
  """Cut only at the model's ``dfax.FeedbackPoint`` markers."""
  return (FeedbackPoint,)


PRESETS: dict[str, Callable[[], Any]] = {f.__name__: f for f in (
    macro, macro_out, micro, sublayer, after_ln, after_ln_head, after_block_ln, markers)}
"""Every preset by name: what ``config.dfa.feedback`` accepts besides ''."""
