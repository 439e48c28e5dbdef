"""Large batches are simulated in row blocks: the same projection, only the noise redrawn."""

import jax
import jax.numpy as jnp
import numpy as np

import dfax
from dfax import opu
from dfax.opu import projector

POINTS = [dfax.PointSpec("a/in", (50, 40), jnp.float32),
          dfax.PointSpec("b/in", (2, 50, 12), jnp.float32, stack_ndim=1)]


def _project(config, noise_key=None):
  error = jax.random.normal(jax.random.key(0), (50, 16))
  return opu.make_projector(config, key=jax.random.key(1), noise_key=noise_key)(error, POINTS)


def test_row_blocks_keep_the_projection_and_the_noise_statistics(monkeypatch):
  config, noisy = opu.OPUConfig(noise=False), opu.OPUConfig(photons_per_unit=50.0)
  whole, whole_noisy = _project(config), _project(noisy, jax.random.key(2))
  monkeypatch.setattr(projector, "ROW_BLOCK", 2 * 64 * 16)  # 16 rows a block: 4 blocks, padded
  blocked, blocked_noisy = _project(config), _project(noisy, jax.random.key(2))
  for a, b in zip(whole, blocked):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)  # float order
  err = [np.ravel(n - c) for n, c in zip(whole_noisy, whole)]
  err_blocked = [np.ravel(n - c) for n, c in zip(blocked_noisy, blocked)]
  assert not np.array_equal(err[0], err_blocked[0])  # another noise realisation...
  np.testing.assert_allclose(np.std(np.concatenate(err_blocked)),
                             np.std(np.concatenate(err)), rtol=0.1)  # ...of the same noise
