"""The cheap keyed camera noise: reproducible, standardised, near-Gaussian, independent."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dfax
from dfax import opu
from dfax.opu.noise import fast_normal


def test_same_key_same_bits_other_key_uncorrelated():
  a = fast_normal(jax.random.key(0), (256, 512))
  np.testing.assert_array_equal(a, fast_normal(jax.random.key(0), (256, 512)))
  b = fast_normal(jax.random.key(1), (256, 512))
  assert abs(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1]) < 0.01
  assert a.dtype == jnp.float32 and fast_normal(jax.random.key(0), (3,), jnp.bfloat16).dtype == \
      jnp.bfloat16


def test_moments_match_a_standard_normal_up_to_the_documented_tails():
  z = np.ravel(fast_normal(jax.random.key(3), (1 << 20,)))
  assert abs(z.mean()) < 5e-3 and abs(z.std() - 1) < 5e-3
  assert abs(np.mean(z ** 4) - 2.7) < 0.02        # Irwin–Hall(4) kurtosis
  assert np.abs(z).max() <= 3.47
  assert abs(np.mean(np.abs(z) < 1) - 0.6827) < 0.02  # the bulk is near-Gaussian
  neighbours = np.corrcoef(z[:-1], z[1:])[0, 1]    # consecutive counters decorrelated
  assert abs(neighbours) < 5e-3


def test_too_large_a_draw_names_the_fix():
  with pytest.raises(ValueError, match="split the draw"):
    jax.eval_shape(lambda k: fast_normal(k, (1 << 16, 1 << 16)), jax.random.key(0))


def test_fast_and_exact_noise_degrade_the_projection_alike():
  error = jax.random.normal(jax.random.key(0), (64, 32))
  spec = [dfax.PointSpec("p/in", (64, 512), jnp.float32)]
  exact = opu.digital_reference(jax.random.key(1))(error, spec)[0]

  def correlation(fast):
    config = opu.OPUConfig(ternarize=False, bits=None, photons_per_unit=20.0, fast_noise=fast)
    noisy = opu.make_projector(config, key=jax.random.key(1),
                               noise_key=jax.random.key(2))(error, spec)[0]
    return np.corrcoef(np.ravel(noisy), np.ravel(exact))[0, 1]

  fast, slow = correlation(True), correlation(False)
  assert fast < 0.99 and abs(fast - slow) < 0.01
