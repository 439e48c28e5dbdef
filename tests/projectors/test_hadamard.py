"""The structured (randomized Hadamard) projector."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.linalg import hadamard as scipy_hadamard

import dfax
from dfax.projectors.hadamard import fwht

P = dfax.PointSpec


@pytest.mark.parametrize("m", [1, 2, 16, 64, 2048])
def test_fwht_equals_the_orthonormal_hadamard_matrix(m):
  x = jax.random.normal(jax.random.key(0), (2, 3, m))
  h = scipy_hadamard(m) / np.sqrt(m)
  np.testing.assert_allclose(fwht(x), np.asarray(x) @ h.T, rtol=1e-4, atol=1e-4)
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


def test_wide_points_take_independent_blocks_and_narrow_ones_a_subset():
  proj = dfax.projectors.hadamard(jax.random.key(3))
  n = 16
  (wide,) = proj(jnp.eye(n), [P("w/in", (n, 40), jnp.float32)])  # 3 blocks of 16, cut to 40
  (narrow,) = proj(jnp.eye(n), [P("s/in", (n, 5), jnp.float32)])
  for block in (wide[:, :16], wide[:, 16:32], narrow):  # columns are signed Hadamard columns
    cols = np.abs(np.asarray(block)) * np.sqrt(n)
    np.testing.assert_allclose(cols, 1.0, rtol=1e-5)
  gram = np.asarray(wide[:, :16]).T @ np.asarray(wide[:, :16])
  np.testing.assert_allclose(gram, np.eye(16) * gram[0, 0], atol=1e-5)  # orthogonal block
  cross = np.asarray(wide[:, :16]).T @ np.asarray(wide[:, 16:32])
  assert not np.allclose(np.abs(cross), np.abs(gram))  # the second block has its own signs


def test_hadamard_keys_by_path_and_stacked_copies_differ():
  proj = dfax.projectors.hadamard(jax.random.key(1))
  e = jax.random.normal(jax.random.key(2), (4, 10))
  a, b = proj(e, [P("a", (4, 32), jnp.float32), P("b", (3, 4, 32), jnp.float32, 1)])
  (a2,) = proj(e, [P("a", (4, 32), jnp.float32)])
  np.testing.assert_array_equal(a, a2)
  assert not np.allclose(b[0], b[1]) and not np.allclose(a, b[0])


def test_hadamard_trains_through_dfa_grad():
  """Thirty Adam steps with Hadamard feedback fit a small regression (loss at most a third)."""
  import flax.linen as nn
  import optax

  class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
      return nn.Dense(3)(nn.tanh(nn.Dense(32)(nn.tanh(nn.Dense(32)(x)))))

  model = MLP()
  x = jax.random.normal(jax.random.key(0), (64, 5))
  target = jnp.tanh(x[:, :3] * 2.0)
  params = model.init(jax.random.key(1), x)
  loss = lambda p: ((model.apply(p, x) - target) ** 2).mean()
  grad = jax.jit(dfax.dfa_grad(loss, projector=dfax.projectors.hadamard(jax.random.key(0))))
  opt = optax.adam(1e-2)
  state = opt.init(params)
  first = float(loss(params))
  for _ in range(30):
    updates, state = opt.update(grad(params), state, params)
    params = optax.apply_updates(params, updates)
  assert float(loss(params)) < first / 3