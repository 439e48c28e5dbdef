"""Per-point layout shared by the dense and Hadamard projectors: tied layers, shared dims."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dfax

P = dfax.PointSpec
FACTORIES = [dfax.projectors.gaussian, dfax.projectors.uniform, dfax.projectors.hadamard]


@pytest.mark.parametrize("factory", FACTORIES)
def test_tie_copies_gives_every_layer_the_same_projection(factory):
  e = jax.random.normal(jax.random.key(0), (3, 10))
  spec = P("blocks/in", (4, 3, 8), jnp.float32, stack_ndim=1)  # 4 scanned layers
  (tied,) = factory(jax.random.key(1), tie_copies=True)(e, [spec])
  (untied,) = factory(jax.random.key(1))(e, [spec])
  assert tied.shape == untied.shape == spec.shape
  for layer in range(1, 4):
    np.testing.assert_array_equal(tied[layer], tied[0])
    assert not np.allclose(untied[layer], untied[0])
  # The tied projection is the one an unstacked point of that path would get.
  (single,) = factory(jax.random.key(1))(e, [P("blocks/in", (3, 8), jnp.float32)])
  np.testing.assert_allclose(tied[0], single, rtol=1e-6)


@pytest.mark.parametrize("factory", FACTORIES)
def test_feature_ndim_shares_the_projection_over_tokens(factory):
  e = jax.random.normal(jax.random.key(0), (2, 10))  # one error per image
  spec = P("blk/in", (2, 5, 8), jnp.float32)  # 5 tokens of 8 features
  (c,) = factory(jax.random.key(1), feature_ndim=1)(e, [spec])
  assert c.shape == spec.shape
  for token in range(1, 5):
    np.testing.assert_array_equal(c[:, token], c[:, 0])
  # Equal to projecting onto a point of the kept width (same path, same key).
  (narrow,) = factory(jax.random.key(1))(e, [P("blk/in", (2, 8), jnp.float32)])
  np.testing.assert_allclose(c[:, 0], narrow, rtol=1e-6)
  (full,) = factory(jax.random.key(1))(e, [spec])
  assert not np.allclose(full[:, 1], full[:, 0])  # the default: every token its own columns


def test_feature_ndim_with_stacked_points_and_bad_values():
  e = jax.random.normal(jax.random.key(0), (2, 10))
  spec = P("blocks/in", (3, 2, 5, 8), jnp.float32, stack_ndim=1)
  (c,) = dfax.projectors.uniform(jax.random.key(1), feature_ndim=1)(e, [spec])
  np.testing.assert_array_equal(c[:, :, 4], c[:, :, 0])
  assert not np.allclose(c[1], c[0])  # layers still have their own matrices
  (wide,) = dfax.projectors.uniform(jax.random.key(1), feature_ndim=5)(e, [spec])
  (default,) = dfax.projectors.uniform(jax.random.key(1))(e, [spec])
  np.testing.assert_array_equal(wide, default)  # more dims than the point has: all of them
  for factory in (dfax.projectors.gaussian, dfax.projectors.hadamard):
    with pytest.raises(ValueError, match="feature_ndim"):
      factory(jax.random.key(0), feature_ndim=0)
