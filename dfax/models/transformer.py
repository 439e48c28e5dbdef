"""A decoder-only Transformer LM: layers through nn.scan, optional nn.remat.

The blocks carry ``dfax.FeedbackPoint`` markers for the "micro" preset
(after attention + residual, after the MLP hidden layer, at block output);
outside ``dfax.dfa_grad`` they are identities. See ``dfax.models.presets``.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from dfax.core.cuts import exact, exact_boundary
from dfax.core.selection import FeedbackPoint

NORMS = ("pre", "post")  # TransformerConfig.norm: where each block's LayerNorms sit
ERROR_AT = ("hidden", "logits")  # TransformerConfig.error_at: where DFA's error is taken
RESIDUAL_INITS = ("default", "depth")  # TransformerConfig.residual_init


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
  """Sizes and switches of ``TransformerLM``.

  ``error_at``: "hidden" takes the DFA error before the vocabulary projection
  (dL/dh of the final hidden state, Launay et al. 2020's default), "logits"
  after it. It only changes how ``lm_forward`` applies the model.

  ``norm``: "pre" (LayerNorm in front of each sublayer, a final LayerNorm before
  the head) or "post" (LayerNorm after each residual add, as in Vaswani et al.
  2017 and Launay et al. 2020's DFA Transformer; no final LayerNorm).

  ``bp_blocks``: under ``dfax.dfa_grad``, the last ``bp_blocks`` blocks train by
  exact backprop from the head and the others by DFA (the hybrid method; see
  ``scan_blocks``). It changes nothing else: under ``jax.grad`` the model is
  the same function, and its blocks' parameters sit under ``blocks/block``.

  ``scan_unroll``: blocks per iteration of the ``nn.scan`` loop that runs them
  (``num_layers`` or more unrolls the stack). The function, the parameters and
  the feedback points are the same for every value; only the compiled program
  changes. With a cut after every block (``macro_out``), DFA discards every
  block's input cotangent except the first block's, but inside one loop body
  XLA cannot drop it: unrolled, it does (see docs/depth.md, the step at its
  floor), at the cost of compiling every unrolled block.

  ``residual_init``: "default" (Flax's LeCun-normal kernels) or "depth" (GPT-2's
  residual initialisation: the kernels that write into the residual stream,
  attention's output projection and the MLP's second layer, scaled by
  ``1/sqrt(2 * num_layers)``). With it, 8 post-LN blocks train by backprop at
  learning rate 3e-3, where with the default they do not (docs/depth.md, the
  post-LN baseline). Only the initial parameters change.
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
  bp_blocks: int = 0
  scan_unroll: int = 1
  residual_init: str = "default"

  def __post_init__(self):
    if self.norm not in NORMS:
      raise ValueError(f"norm must be 'pre' or 'post', got {self.norm!r}.")
    if self.error_at not in ERROR_AT:
      raise ValueError(f"error_at must be 'hidden' or 'logits', got {self.error_at!r}.")
    if self.residual_init not in RESIDUAL_INITS:
      raise ValueError(f"residual_init must be 'default' or 'depth', got "
                       f"{self.residual_init!r}.")
    if not 0 <= self.bp_blocks <= self.num_layers:
      raise ValueError(f"bp_blocks must be in 0..num_layers={self.num_layers}, got "
                       f"{self.bp_blocks}.")
    unroll = self.scan_unroll
    if isinstance(unroll, bool) or not isinstance(unroll, int) or unroll < 1:
      raise ValueError(f"scan_unroll must be an integer >= 1 (blocks per loop iteration; "
                       f"num_layers unrolls the stack), got {unroll!r}.")


def residual_output_init(config: TransformerConfig) -> nn.initializers.Initializer:
  """The initialiser of the kernels that write into the residual stream (``residual_init``).

  Examples:
    >>> import jax
    >>> deep = residual_output_init(TransformerConfig(num_layers=8, residual_init="depth"))
    >>> plain = residual_output_init(TransformerConfig(num_layers=8))
    >>> key = jax.random.key(0)
    >>> bool(jnp.allclose(deep(key, (4, 4)), plain(key, (4, 4)) / 4))   # 1/sqrt(2 * 8)
    True
  """
  base = nn.initializers.lecun_normal()  # Flax's Dense default, named so it cannot drift
  if config.residual_init == "default":
    return base
  factor = (2 * config.num_layers) ** -0.5

  def depth_scaled(key, shape, dtype=jnp.float32):
    # the barrier keeps XLA from folding the factor into the initialiser's own scale, so
    # the kernel is the default kernel times the factor to the bit, under jit or not
    return jax.lax.optimization_barrier(base(key, shape, dtype)) * factor
  return depth_scaled


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
    to_residual = residual_output_init(c)
    h = nn.MultiHeadDotProductAttention(num_heads=c.num_heads, dtype=c.dtype, deterministic=True,
                                        out_kernel_init=to_residual, name="attn")(h, h, mask=mask)
    x = FeedbackPoint(name="attn_res")(x + h if pre else ln_attn(x + h))
    h = ln_mlp(x) if pre else x
    h = nn.gelu(nn.Dense(c.d_ff, dtype=c.dtype, name="fc1")(h))
    h = FeedbackPoint(name="mlp_hidden")(h)
    h = nn.Dense(c.d_model, dtype=c.dtype, kernel_init=to_residual, name="fc2")(h)
    return FeedbackPoint(name="out")(x + h if pre else ln_mlp(x + h)), None


class HybridLayer(nn.Module):
  """One scanned layer of a hybrid stack: DFA below layer ``num_layers - bp_blocks``, exact above.

  Called with the layer's index (the scan's input): the block runs inside
  ``dfax.exact(when=layer >= first)``, so the cuts of the last ``bp_blocks``
  layers pass the exact cotangent and get no feedback, and the first exact
  layer's input is a ``dfax.exact_boundary``: a feedback point, where the
  exact gradient stops instead of leaking into the DFA layers along the
  residual stream, and the last DFA layer gets the error's projection.
  """
  config: TransformerConfig

  @nn.compact
  def __call__(self, x, layer):
    first = self.config.num_layers - self.config.bp_blocks
    if first:  # with every layer exact, the embeddings train exactly too: it is backprop
      x = exact_boundary(x, layer == first, name="/".join(self.path) + "/exact_boundary")
    with exact(when=layer >= first):
      return Block(self.config, name="block")(x)


def scanned_blocks(config: TransformerConfig, name: str = "blocks") -> nn.Module:
  """``config.num_layers`` blocks in one ``nn.scan`` (``nn.remat`` if asked).

  ``config.scan_unroll`` blocks run per loop iteration. Call the result as
  ``blocks(x, layer_indices(config))``. With
  ``config.bp_blocks > 0`` each layer is a :class:`HybridLayer`, fed its
  index, so that the last ``bp_blocks`` train by exact backprop under DFA.
  """
  layer = HybridLayer if config.bp_blocks else Block
  layer = nn.remat(layer) if config.remat else layer
  return nn.scan(layer, variable_axes={"params": 0}, split_rngs={"params": True},
                 length=config.num_layers, unroll=config.scan_unroll)(config, name=name)


def layer_indices(config: TransformerConfig):
  """The scan's input for :func:`scanned_blocks`: the layer indices of a hybrid, else None."""
  return jnp.arange(config.num_layers) if config.bp_blocks else None


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
    self.blocks = scanned_blocks(c)
    self.ln_final = nn.LayerNorm(dtype=c.dtype, name="ln_final")
    self.head = nn.Dense(c.vocab_size, dtype=c.dtype, name="head")

  def hidden(self, tokens):
    """The final hidden state (before the vocabulary projection): (B, T, d_model)."""
    x = self.embed(tokens) + self.pos[: tokens.shape[1]]
    x, _ = self.blocks(x.astype(self.config.dtype), layer_indices(self.config))
    return x

  def logits_from_hidden(self, h):
    # a hybrid's tail trains exactly, as its last blocks (lm_forward's error_at="hidden"
    # already applies it inside dfax.exact)
    with exact() if self.config.bp_blocks else contextlib.nullcontext():
      return self.head(self.ln_final(h) if self.config.norm == "pre" else h)

  def __call__(self, tokens):
    return self.logits_from_hidden(self.hidden(tokens))


def lm_forward(model: TransformerLM, params, tokens):
  """The LM's logits, applied so that DFA's error is taken where ``config.error_at`` says.

  With "hidden", the body and the head are two ``model.apply`` calls: the
  body's output is where dfax takes the error (dL/dh before the head), and
  the head's call runs inside ``dfax.exact()``: the final LayerNorm and the
  head train with their exact gradient and make no feedback point. With "logits" it is
  ``model.apply(params, tokens)``. Other models are applied with
  ``model.apply`` (the trainer picks by family: the ``forward`` of its record in ``dfax.train.families``).

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
    h = model.apply(params, tokens, method="hidden")  # the output: DFA's error is dL/dh
    with exact():  # the final LayerNorm and the head train by exact backprop
      return model.apply(params, h, method="logits_from_hidden")
  return model.apply(params, tokens)
