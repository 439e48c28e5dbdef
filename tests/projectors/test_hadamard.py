"""The structured (randomized Hadamard) projector."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.linalg import hadamard as scipy_hadamard

import dfax
from dfax.projectors.hadamard import fwht

P = dfax.PointSpec


def test_fwht_equals_the_orthonormal_hadamard_matrix():
  x = jax.random.normal(jax.random.key(0), (3, 16))
  h = scipy_hadamard(16) / 4.0
  np.testing.assert_allclose(fwht(x), x @ h.T, rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="power-of-two"):
    fwht(jnp.ones(6))


def test_hadamard_is_a_fixed_linear_per_example_map_with_gaussian_like_scale():
  proj = dfax.projectors.hadamard(jax.random.key(1))
  spec = P("p/in", (64, 300), jnp.float32)
  e = jax.random.normal(jax.random.key(2), (64, 40))
  (c,) = proj(e, [spec])
  (c2,) = proj(2 * e[:8], [P("p/in", (8, 300), jnp.float32)])
  np.testing.assert_allclose(c2, 2 * c[:8], rtol=1e-5, atol=1e-5)  # linear, per example
  # Rows of the implicit matrix: project the basis vectors.
  (m,) = proj(jnp.eye(40), [P("p/in", (40, 300), jnp.float32)])
  np.testing.assert_allclose(float(jnp.var(m)), 1 / 40, rtol=0.1)
  expected = np.var(np.asarray(e), axis=1).mean()  # |e|^2/n per entry
  np.testing.assert_allclose(float(jnp.var(c)), expected, rtol=0.15)


def test_hadamard_keys_by_path_and_stacked_copies_differ():
  proj = dfax.projectors.hadamard(jax.random.key(1))
  e = jax.random.normal(jax.random.key(2), (4, 10))
  a, b = proj(e, [P("a", (4, 32), jnp.float32), P("b", (3, 4, 32), jnp.float32, 1)])
  (a2,) = proj(e, [P("a", (4, 32), jnp.float32)])
  np.testing.assert_array_equal(a, a2)
  assert not np.allclose(b[0], b[1]) and not np.allclose(a, b[0])


def test_hadamard_trains_through_dfa_grad():
  import flax.linen as nn

  class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
      return nn.Dense(3)(nn.tanh(nn.Dense(32)(nn.tanh(nn.Dense(32)(x)))))

  model = MLP()
  x = jax.random.normal(jax.random.key(0), (8, 5))
  params = model.init(jax.random.key(1), x)
  g = dfax.dfa_grad(lambda p: (model.apply(p, x) ** 2).mean(),
                    projector=dfax.projectors.hadamard(jax.random.key(0)))(params)
  assert all(bool(jnp.isfinite(v).all()) for v in jax.tree.leaves(g))
