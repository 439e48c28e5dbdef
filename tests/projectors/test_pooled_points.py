"""Pooled points (an encoder's source tokens): the contract every built-in projector keeps.

The error is ``(batch, target, n)``; an encoder point is ``(batch, source, d)``
with ``PointSpec.pooled = 1``. Every projector must give it the target-averaged
error, projected per example with the point's own matrix and broadcast over the
source positions, whatever the two lengths are, and never pair source token
``i`` with target token ``i``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dfax
from dfax import opu
from dfax.parallel.feedback import from_projector, keyed_dense

P = dfax.PointSpec
BATCH, TARGET, N_OUT, D_DEC, D_ENC = 3, 5, 7, 6, 4


def _host_gaussian(error, points):
  # a host (numpy) function: here it just defers to the JAX projector
  return [np.asarray(c) for c in dfax.projectors.gaussian(jax.random.key(1))(error, points)]


PROJECTORS = {
    "gaussian": lambda: dfax.projectors.gaussian(jax.random.key(1)),
    "uniform_tiled": lambda: dfax.projectors.uniform(jax.random.key(1), tile=3),
    "hadamard": lambda: dfax.projectors.hadamard(jax.random.key(1)),
    "shared": lambda: dfax.projectors.shared(jax.random.key(1)),
    "shared_reuse_tied": lambda: dfax.projectors.shared(jax.random.key(1), reuse=True,
                                                        tie_copies=True, scale="point"),
    "opu_ideal": lambda: opu.make_projector(opu.OPUConfig.ideal(), key=jax.random.key(1)),
    "opu_ternary_8bit": lambda: opu.make_projector(opu.OPUConfig(noise=False),
                                                   key=jax.random.key(1)),
    "opu_digital_reference": lambda: opu.digital_reference(jax.random.key(1)),
    "host": lambda: dfax.projectors.host_projector(_host_gaussian),
    "stage_keyed_dense": lambda: _stage(keyed_dense(jax.random.key(1))),
    "identity": lambda: dfax.projectors.identity(),
}


def _stage(feedback):
  """A pipeline stage's feedback (all copies) as a projector, for the same contract."""

  def projector(error, points):
    return [feedback(error, p, jnp.arange(p.num_copies)).reshape(p.shape) for p in points]

  return projector


def _points(source, d_enc=D_ENC, d_dec=D_DEC):
  return [P("decoder/ln/out", (BATCH, TARGET, d_dec), jnp.float32),
          P("encoder/layers/ln/out", (2, BATCH, source, d_enc), jnp.float32, stack_ndim=1,
            pooled=1),
          P("encoder/final_ln/out", (BATCH, source, d_enc), jnp.float32, pooled=1)]


def _error(seed=0, n_out=N_OUT):
  return jax.random.normal(jax.random.key(seed), (BATCH, TARGET, n_out))


@pytest.mark.parametrize("name", sorted(PROJECTORS))
@pytest.mark.parametrize("source", [TARGET + 4, TARGET])  # different and equal lengths
@pytest.mark.slow
def test_pooled_points_get_the_target_averaged_error_broadcast_over_source(name, source):
  width = N_OUT if name == "identity" else None  # identity needs points as wide as the error
  points = _points(source, *(2 * (width,) if width else ()))
  error = _error()
  with jax.default_matmul_precision("highest"):
    out = jax.jit(lambda e: PROJECTORS[name]()(e, points))(error)
    # the order of the target tokens does not matter to an encoder point
    permuted = PROJECTORS[name]()(error[:, ::-1], points)
    # the same projection of the averaged error, to points without tokens
    dec = points[0]
    flat = [P(dec.path, (BATCH, dec.shape[-1]), dec.dtype)]
    flat += [P(p.path, p.shape[:p.stack_ndim + 1] + p.shape[-1:], p.dtype, p.stack_ndim)
             for p in points[1:]]
    mean = PROJECTORS[name]()(error.mean(1), flat)
  for p, c in zip(points, out):
    assert c.shape == p.shape and c.dtype == p.dtype and bool(jnp.all(jnp.isfinite(c)))
  for p, c, c_perm, c_mean in zip(points[1:], out[1:], permuted[1:], mean[1:]):
    assert float(jnp.abs(c).max()) > 0, p.path
    np.testing.assert_array_equal(c, jnp.broadcast_to(c[..., :1, :], c.shape))  # per example
    np.testing.assert_allclose(c, c_perm, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(c[..., 0, :], c_mean, rtol=1e-4, atol=1e-5)
  # the decoder point is still paired token by token: reversing the targets reverses it
  np.testing.assert_allclose(permuted[0], out[0][:, ::-1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["gaussian", "shared", "opu_ideal"])
def test_unmarked_encoder_point_is_refused_naming_the_fix(name):
  point = P("encoder/ln/out", (BATCH, TARGET + 4, D_ENC), jnp.float32)
  with pytest.raises(ValueError, match=r"dfax.encoder_decoder\(...\) or dfax.pooled"):
    PROJECTORS[name]()(_error(), [point])


def test_zero_control_accepts_pooled_points_and_checks_them_like_a_projector():
  points = _points(TARGET + 4)
  out = dfax.projectors.zeros()(_error(), points)
  assert [c.shape for c in out] == [p.shape for p in points]
  assert not any(bool(jnp.any(c)) for c in out)
  wrong_batch = P("encoder/ln/out", (BATCH + 1, 9, D_ENC), jnp.float32, pooled=1)
  with pytest.raises(ValueError, match="example dims"):
    dfax.projectors.zeros()(_error(), [wrong_batch])
  with pytest.raises(ValueError, match="token_ndim"):  # the error has no token dim to pool
    dfax.projectors.zeros()(jnp.ones((BATCH, N_OUT)), [P("e", (BATCH, 9, 4), jnp.float32,
                                                         pooled=2)])


def test_from_projector_wraps_pooled_points_for_a_stage():
  point = _points(TARGET + 4)[1]
  full = dfax.projectors.gaussian(jax.random.key(1))(_error(), [point])[0]
  mine = from_projector(dfax.projectors.gaussian(jax.random.key(1)))(_error(), point,
                                                                     jnp.array([1]))
  np.testing.assert_array_equal(mine[0], full[1])
