"""A small convolutional net for 28x28 images (MNIST-sized)."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from dfax.models.mlp import get_activation

POOLS = {"max": nn.max_pool, "avg": nn.avg_pool}


class CNN(nn.Module):
  """Conv 5x5 -> activation -> 2x2 pool per conv layer, then Dense layers.

  Layers are named ``Conv_0 ..`` and ``Dense_0 ..`` (the last Dense gives the
  logits). With the defaults on ``(N, 28, 28, 1)`` inputs: 28 -> 14 -> 7
  spatially, 7 * 7 * 64 = 3136 features into ``Dense_0``; 857,738 parameters.

  Attributes:
    num_classes: number of logits.
    features: channels of each conv layer.
    dense: widths of the hidden Dense layers.
    activation: name of the activation (see ``dfax.models.mlp.ACTIVATIONS``).
    kernel_size: conv window.
    pool: "max" or "avg" (2x2, stride 2).

  Examples:
    >>> model = CNN(num_classes=10)
    >>> images = jnp.zeros((2, 28, 28, 1))
    >>> params = model.init(jax.random.key(0), images)
    >>> model.apply(params, images).shape
    (2, 10)
  """

  num_classes: int
  features: Sequence[int] = (32, 64)
  dense: Sequence[int] = (256,)
  activation: str = "relu"
  kernel_size: tuple[int, int] = (5, 5)
  pool: str = "max"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    act = get_activation(self.activation)
    if self.pool not in POOLS:
      raise ValueError(f"unknown pool {self.pool!r}; valid: {', '.join(sorted(POOLS))}")
    pool = POOLS[self.pool]
    if x.ndim == 3:  # (N, H, W): add the channel axis
      x = x[..., None]
    for i, channels in enumerate(self.features):
      x = nn.Conv(channels, self.kernel_size, padding="SAME", name=f"Conv_{i}")(x)
      x = pool(act(x), window_shape=(2, 2), strides=(2, 2))
    x = jnp.reshape(x, (x.shape[0], -1))
    for i, width in enumerate(self.dense):
      x = act(nn.Dense(width, name=f"Dense_{i}")(x))
    return nn.Dense(self.num_classes, name=f"Dense_{len(self.dense)}")(x)
