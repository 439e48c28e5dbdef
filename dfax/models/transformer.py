"""A decoder-only Transformer LM: layers through nn.scan, optional nn.remat.

The blocks carry ``dfax.FeedbackPoint`` markers for the "micro" preset
(after attention + residual, after the MLP hidden layer, at block output);
outside ``dfax.dfa_grad`` they are identities. See ``dfax.models.presets``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import flax.linen as nn
import jax.numpy as jnp

from dfax.core.selection import FeedbackPoint

NORMS = ("pre", "post")  # TransformerConfig.norm: where each block's LayerNorms sit
ERROR_AT = ("hidden", "logits")  # TransformerConfig.error_at: where DFA's error is taken


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
  """Sizes and switches of ``TransformerLM``.

  ``error_at``: "hidden" takes the DFA error before the vocabulary projection
  (dL/dh of the final hidden state, Launay et al. 2020's default), "logits"
  after it. It only changes how ``lm_forward`` applies the model.

  ``norm``: "pre" (LayerNorm in front of each sublayer, a final LayerNorm before
  the head) or "post" (LayerNorm after each residual add, as in Vaswani et al.
  2017 and Launay et al. 2020's DFA Transformer; no final LayerNorm).
  """
  vocab_size: int = 96
  d_model: int = 128
  num_heads: int = 4
  num_layers: int = 4
  d_ff: int = 512
  max_len: int = 256
  remat: bool = False
  dtype: Any = jnp.float32
  error_at: str = "hidden"
  causal: bool = True
  norm: str = "pre"

  def __post_init__(self):
    if self.norm not in NORMS:
      raise ValueError(f"norm must be 'pre' or 'post', got {self.norm!r}.")
    if self.error_at not in ERROR_AT:
      raise ValueError(f"error_at must be 'hidden' or 'logits', got {self.error_at!r}.")


class Block(nn.Module):
  """Transformer block: causal self-attention and a GELU MLP, pre- or post-LN."""
  config: TransformerConfig

  @nn.compact
  def __call__(self, x, _=None):
    c = self.config
    pre = c.norm == "pre"
    mask = nn.make_causal_mask(jnp.ones(x.shape[:2], jnp.int32)) if c.causal else None
    ln_attn = nn.LayerNorm(dtype=c.dtype, name="ln_attn")
    ln_mlp = nn.LayerNorm(dtype=c.dtype, name="ln_mlp")
    h = ln_attn(x) if pre else x
    h = nn.MultiHeadDotProductAttention(num_heads=c.num_heads, dtype=c.dtype,
                                        deterministic=True, name="attn")(h, h, mask=mask)
    x = FeedbackPoint(name="attn_res")(x + h if pre else ln_attn(x + h))
    h = ln_mlp(x) if pre else x
    h = nn.gelu(nn.Dense(c.d_ff, dtype=c.dtype, name="fc1")(h))
    h = FeedbackPoint(name="mlp_hidden")(h)
    h = nn.Dense(c.d_model, dtype=c.dtype, name="fc2")(h)
    return FeedbackPoint(name="out")(x + h if pre else ln_mlp(x + h)), None


class TransformerLM(nn.Module):
  """Token + position embeddings, ``num_layers`` scanned blocks, final LN, vocab head.

  Examples:
    >>> import jax
    >>> model = TransformerLM(TransformerConfig(vocab_size=84, num_layers=1))
    >>> tokens = jnp.zeros((2, 16), jnp.int32)       # (B, T) token ids
    >>> params = model.init(jax.random.key(0), tokens)
    >>> model.apply(params, tokens).shape            # (B, T, vocab)
    (2, 16, 84)
  """
  config: TransformerConfig
  # parameters stacked along a leading layer axis (reported per layer by diagnostics)
  stacked_params: ClassVar[tuple[str, ...]] = ("blocks",)

  def setup(self):
    c = self.config
    self.embed = nn.Embed(c.vocab_size, c.d_model, name="embed")
    self.pos = self.param("pos_embed", nn.initializers.normal(0.02), (c.max_len, c.d_model))
    block = nn.remat(Block) if c.remat else Block
    self.blocks = nn.scan(block, variable_axes={"params": 0}, split_rngs={"params": True},
                          length=c.num_layers)(c, name="blocks")
    self.ln_final = nn.LayerNorm(dtype=c.dtype, name="ln_final")
    self.head = nn.Dense(c.vocab_size, dtype=c.dtype, name="head")

  def hidden(self, tokens):
    """The final hidden state (before the vocabulary projection): (B, T, d_model)."""
    x = self.embed(tokens) + self.pos[: tokens.shape[1]]
    x, _ = self.blocks(x.astype(self.config.dtype), None)
    return x

  def logits_from_hidden(self, h):
    return self.head(self.ln_final(h) if self.config.norm == "pre" else h)

  def __call__(self, tokens):
    return self.logits_from_hidden(self.hidden(tokens))


def lm_forward(model: TransformerLM, params, tokens):
  """The LM's logits, applied so that DFA's error is taken where ``config.error_at`` says.

  With "hidden", the body and the head are two ``model.apply`` calls: dfax
  taps the output of the outermost call of each, so the error is dL/dh before
  the head, which itself trains with its exact gradient. With "logits" it is
  ``model.apply(params, tokens)``. Other models are applied with
  ``model.apply`` (the trainer picks by family: ``dfax.train.trainer.FORWARDS``).

  Args:
    model: a ``TransformerLM``.
    params: its variables.
    tokens: (B, T) int32.

  Returns:
    The logits, (B, T, vocab).

  Raises:
    TypeError: when ``model`` is not a ``TransformerLM``.

  Examples:
    >>> import jax
    >>> model = TransformerLM(TransformerConfig(vocab_size=84, num_layers=1))
    >>> tokens = jnp.zeros((2, 16), jnp.int32)
    >>> params = model.init(jax.random.key(0), tokens)
    >>> lm_forward(model, params, tokens).shape
    (2, 16, 84)
  """
  if not isinstance(model, TransformerLM):
    raise TypeError(f"lm_forward applies a TransformerLM, not {type(model).__name__}; apply "
                    "other models with model.apply(params, x).")
  if model.config.error_at == "hidden":
    h = model.apply(params, tokens, method="hidden")
    return model.apply(params, h, method="logits_from_hidden")
  return model.apply(params, tokens)
