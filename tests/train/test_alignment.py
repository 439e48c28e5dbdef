"""Per-layer cosines between DFA updates and backprop gradients."""

import jax
import jax.numpy as jnp
import numpy as np

from dfax.train.alignment import layer_cosines


def test_cosines_per_layer_and_bounded():
  g = {"params": {"a": {"kernel": jax.random.normal(jax.random.key(0), (300, 7)) * 1e3,
                        "bias": jnp.ones(7)},
                  "b": {"kernel": jnp.array([1.0, 0.0])}}}
  h = {"params": {"a": g["params"]["a"], "b": {"kernel": jnp.array([1.0, 1.0])}}}
  cos = layer_cosines(g, h)
  assert set(cos) == {"a", "b"}
  assert 1 - 1e-6 < float(cos["a"]) <= 1.0  # identical vectors: never above 1 by rounding
  np.testing.assert_allclose(float(cos["b"]), 1 / np.sqrt(2), rtol=1e-6)
  neg = layer_cosines(g, jax.tree.map(lambda x: -x, g))
  assert -1.0 <= float(neg["a"]) < -1 + 1e-6


def test_stacked_modules_get_one_cosine_per_layer():
  blocks = jax.random.normal(jax.random.key(0), (3, 4, 5))
  flipped = blocks.at[1].multiply(-1.0)  # layer 1 points the other way
  g = {"params": {"blocks": {"kernel": blocks}, "head": {"kernel": jnp.ones(2)}}}
  h = {"params": {"blocks": {"kernel": flipped}, "head": {"kernel": jnp.ones(2)}}}
  cos = layer_cosines(g, h, stacked=("blocks",))
  assert set(cos) == {"blocks/0", "blocks/1", "blocks/2", "head"}
  np.testing.assert_allclose([float(cos[f"blocks/{i}"]) for i in range(3)], [1, -1, 1],
                             atol=1e-6)
