"""A plain multilayer perceptron (the fully connected nets of Nøkland, 2016)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "tanh": nn.tanh,
    "relu": nn.relu,
    "gelu": nn.gelu,
    "silu": nn.silu,
    "elu": nn.elu,
    "sigmoid": nn.sigmoid,
    "leaky_relu": functools.partial(nn.leaky_relu, negative_slope=0.01),
    "identity": lambda x: x,
}


def get_activation(name: str) -> Callable[[jax.Array], jax.Array]:
  """The activation function called ``name``.

  Args:
    name: one of ``ACTIVATIONS`` (e.g. "tanh", "relu", "gelu").

  Returns:
    An elementwise function.

  Raises:
    ValueError: unknown name (the message lists the valid ones).

  Examples:
    >>> get_activation("relu")(jnp.array([-1.0, 2.0]))
    Array([0., 2.], dtype=float32)
  """
  try:
    return ACTIVATIONS[name]
  except (KeyError, TypeError):
    raise ValueError(
        f"unknown activation {name!r}; valid names: {', '.join(sorted(ACTIVATIONS))}") from None


class MLP(nn.Module):
  """Flatten, then Dense + activation per hidden layer, then a Dense to logits.

  The layers are named ``Dense_0 .. Dense_{len(features)}`` (the last one
  gives the logits). Nøkland's (2016) MNIST setups are
  ``features=(800, 800)`` and ``features=(240,) * 7`` with tanh.

  Attributes:
    features: widths of the hidden layers.
    num_classes: number of logits.
    activation: name of the hidden activation (see ``ACTIVATIONS``).

  Examples:
    >>> model = MLP(features=(800, 800), num_classes=10)
    >>> x = jnp.zeros((2, 28, 28, 1))
    >>> params = model.init(jax.random.key(0), x)
    >>> model.apply(params, x).shape
    (2, 10)
  """

  features: Sequence[int]
  num_classes: int
  activation: str = "tanh"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    act = get_activation(self.activation)
    x = jnp.reshape(x, (x.shape[0], -1))
    for i, width in enumerate(self.features):
      x = act(nn.Dense(width, name=f"Dense_{i}")(x))
    return nn.Dense(self.num_classes, name=f"Dense_{len(self.features)}")(x)
