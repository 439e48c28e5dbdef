"""A small Vision Transformer: patch embedding, scanned blocks, mean pooling.

``pre_logits`` adds the tanh "pre-logits" layer of the original ViT's
classification head (``representation_size`` in google-research's
vision_transformer) between the final LayerNorm and the head.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import ClassVar

import flax.linen as nn

from dfax.core.cuts import exact
from dfax.models.transformer import TransformerConfig, layer_indices, scanned_blocks


@dataclasses.dataclass(frozen=True)
class ViTConfig:
  num_classes: int = 10
  patch: int = 7
  d_model: int = 64
  num_heads: int = 4
  num_layers: int = 4
  d_ff: int = 128
  remat: bool = False
  norm: str = "pre"  # "pre" or "post" LayerNorm blocks, as in TransformerConfig
  pre_logits: int = 0  # width of a tanh Dense between ln_final and the head; 0: none
  bp_blocks: int = 0  # the last bp_blocks blocks train by exact backprop under DFA (hybrid)
  scan_unroll: int = 1  # blocks per iteration of the blocks' nn.scan, as in TransformerConfig


class ViT(nn.Module):
  """ViT for small images, e.g. MNIST (28x28, 7x7 patches -> 16 tokens).

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> model = ViT(ViTConfig(num_layers=1))
    >>> images = jnp.zeros((2, 28, 28, 1))
    >>> model.apply(model.init(jax.random.key(0), images), images).shape
    (2, 10)
  """
  config: ViTConfig
  # parameters stacked along a leading layer axis (reported per layer by diagnostics)
  stacked_params: ClassVar[tuple[str, ...]] = ("blocks",)

  @nn.compact
  def __call__(self, images):
    c = self.config
    if images.ndim == 3:
      images = images[..., None]
    if images.shape[1] % c.patch or images.shape[2] % c.patch:
      raise ValueError(f"ViT: {images.shape[1]}x{images.shape[2]} images do not tile into "
                       f"{c.patch}x{c.patch} patches; choose a patch that divides both sides.")
    x = nn.Conv(c.d_model, (c.patch, c.patch), strides=(c.patch, c.patch),
                name="patch_embed")(images)
    x = x.reshape(x.shape[0], -1, c.d_model)
    x = x + self.param("pos_embed", nn.initializers.normal(0.02), x.shape[1:])
    block_config = TransformerConfig(d_model=c.d_model, num_heads=c.num_heads, d_ff=c.d_ff,
                                     num_layers=c.num_layers, causal=False, norm=c.norm,
                                     remat=c.remat, bp_blocks=c.bp_blocks,
                                     scan_unroll=c.scan_unroll)
    x, _ = scanned_blocks(block_config)(x, layer_indices(block_config))
    # a hybrid's tail (final LayerNorm, pre-logits, head) trains exactly, as its last blocks
    with exact() if c.bp_blocks else contextlib.nullcontext():
      x = nn.LayerNorm(name="ln_final")(x.mean(axis=1))
      if c.pre_logits:
        x = nn.tanh(nn.Dense(c.pre_logits, name="pre_logits")(x))
      return nn.Dense(c.num_classes, name="head")(x)
