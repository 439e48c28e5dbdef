"""The lightonml backend: exact recovery, the simulator's statistics, jitted DFA through it.

Every test runs against lightonml's own simulated device when lightonml is
installed (``bash scripts/install_lightonml.sh``) and against a numpy stand-in
of that device (tests/opu/lightonml_standin.py) always.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from lightonml_standin import StandinOPU

import dfax
from dfax import opu
from dfax.projectors import layout
from dfax.models import MLP

N, N_OUT = 128, 32
POINTS = [dfax.PointSpec("a/in", (N, 160), jnp.float32),
          dfax.PointSpec("b/in", (2, N, 48), jnp.float32, stack_ndim=1)]
NO_LIGHTONML = "lightonml is not installed; install it with: bash scripts/install_lightonml.sh"


def _lightonml():
  return pytest.importorskip("lightonml", reason=NO_LIGHTONML)


@pytest.fixture(params=["lightonml", "standin"])
def device(request):
  if request.param == "lightonml":
    return _lightonml().OPU(n_components=8, max_n_features=8, simulated=True)
  return StandinOPU(8, 8)


def _error(seed=0):
  return jax.random.normal(jax.random.key(seed), (N, N_OUT))


def _flat(arrays):
  return np.concatenate([np.ravel(a) for a in arrays])


@functools.cache
def _simulated(config, reference=False):
  """dfax's simulator (or its digital reference) on ``_error()``, flattened; shared by devices."""
  proj = (opu.digital_reference(jax.random.key(1)) if reference
          else opu.make_projector(config, key=jax.random.key(1)))
  return _flat(proj(_error(), POINTS))


def _corr(a, b):
  return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def _effective_matrix(device, n, anchor):
  """Re(conj(a)/|a| R) from the simulated device's matrix: what an ideal pass applies."""
  m = np.asarray(device.device.random_matrix)
  a = m[n:n + anchor].sum(0)
  return np.real(np.conj(a) / np.abs(a) * m[:n])


def test_standin_matches_lightonml():
  lightonml = _lightonml()
  real, fake = lightonml.OPU(n_components=40, max_n_features=12, simulated=True), StandinOPU(40, 12)
  x = (np.random.RandomState(1).rand(5, 12) < 0.5).astype(np.uint8)
  for o in (real, fake):
    o.fit1d(n_features=12)
  np.testing.assert_array_equal(real.device.random_matrix, fake.device.random_matrix)
  np.testing.assert_allclose(real.transform(x), fake.transform(x), rtol=1e-6)
  np.testing.assert_allclose(real.linear_transform(x), fake.linear_transform(x), rtol=1e-6)


@pytest.mark.parametrize("intensity", [True, False])
def test_recovers_the_devices_linear_projection_at_unit_variance(device, intensity):
  config = opu.OPUConfig(noise=False, bits=None, intensity=intensity)
  proj = opu.make_lightonml_projector(device, config)
  frames = (np.random.RandomState(2).rand(16, N_OUT) < 0.3).astype(np.uint8)
  got = proj.driver.project(frames, 256)
  anchor = proj.driver._anchor(N_OUT) if intensity else 0
  reff = (_effective_matrix(device, N_OUT, anchor) if intensity
          else np.real(np.asarray(device.device.random_matrix)[:N_OUT]))
  assert _corr(got, frames @ reff) > 0.9999  # the anchor recovery is exact without a camera
  rows = proj.driver.project(np.eye(N_OUT, dtype=np.uint8), 256)  # rows of the used matrix
  np.testing.assert_allclose(np.var(rows), 1.0 / N_OUT, rtol=0.1)  # the digital scale


def test_one_device_call_per_step_and_jitted_dfa_gradients(device):
  proj = opu.make_lightonml_projector(device, opu.OPUConfig(noise=False))
  model = MLP(features=(24, 24), num_classes=10)
  x, y = jax.random.normal(jax.random.key(0), (N, 12)), jnp.arange(N) % 10
  params = jax.jit(model.init)(jax.random.key(1), x)

  def loss_fn(p, x, y):
    logits = model.apply(p, x)
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], 1))

  step = jax.jit(dfax.dfa_grad(loss_fn, projector=proj))
  jax.block_until_ready(step(params, x, y))
  calls = proj.driver.device_calls
  grads = jax.block_until_ready(step(params, x + 1.0, y))
  assert proj.driver.device_calls == calls + 1  # every frame of the step in one transform
  shapes = jax.tree.map(jnp.shape, params)
  assert jax.tree.map(jnp.shape, grads) == shapes
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
  assert float(optax.global_norm(grads)) > 0


def test_projected_values_distributed_like_the_simulators(device):
  """Same settings, different media: the projected values have the same distribution."""
  from scipy import stats
  config = opu.OPUConfig(noise=False)
  got = _flat(opu.make_lightonml_projector(device, config)(_error(), POINTS))
  sim = _simulated(config)
  assert abs(np.std(got) / np.std(sim) - 1) < 0.05
  assert abs(stats.kurtosis(got) - stats.kurtosis(sim)) < 0.3
  assert stats.ks_2samp(got / np.std(got), sim / np.std(sim)).statistic < 0.03


def test_same_degradation_with_bits_and_threshold(device):
  """Correlation with the exact (unternarised) projection through each one's own matrix."""
  e = _error()
  digital = _simulated(None, reference=True)
  settings = [{"bits": 2}, {"bits": 4}, {"bits": 8}, {"threshold": 2.0}]
  ours, theirs = [], []
  for setting in settings:
    config = opu.OPUConfig(noise=False, **setting)
    proj = opu.make_lightonml_projector(device, config)
    got = _flat(proj(e, POINTS))
    total = got.size // N
    reff = _effective_matrix(device, N_OUT, proj.driver._anchor(N_OUT))
    exact = np.asarray(e) @ reff[:, :total]
    exact = _flat(layout.split(jnp.asarray(exact), layout.columns(e.shape, POINTS)))
    theirs.append(_corr(got, exact))
    ours.append(_corr(_simulated(config), digital))
  np.testing.assert_allclose(theirs, ours, atol=0.04)
  assert theirs[0] < theirs[1] < theirs[2] and theirs[3] < theirs[2] - 0.2


def test_bad_settings_name_the_fix():
  with pytest.raises(ValueError, match="noise=False"):
    opu.make_lightonml_projector(StandinOPU(8, 8), opu.OPUConfig())
  with pytest.raises(ValueError, match="ternarize=True"):
    opu.make_lightonml_projector(StandinOPU(8, 8), opu.OPUConfig(noise=False, ternarize=False))
  with pytest.raises(ValueError, match="anchor_pixels"):
    opu.make_lightonml_projector(StandinOPU(8, 8), opu.OPUConfig(noise=False), anchor_pixels=0)


def test_anchor_keep_reads_more_pixels_and_keeps_the_strongest_anchors(device):
  """anchor_keep=0.5: 2x the pixels are read, the kept ones are those with the strongest
  anchor, and their recovery is still the device's exact linear projection."""
  config = opu.OPUConfig(noise=False, bits=None, anchor_keep=0.5)
  proj = opu.make_lightonml_projector(device, config)
  frames = (np.random.RandomState(2).rand(16, N_OUT) < 0.3).astype(np.uint8)
  got = proj.driver.project(frames, 64)
  assert got.shape == (16, 64) and device.n_components == 128
  anchor = proj.driver._anchor(N_OUT)
  m = np.asarray(device.device.random_matrix)
  strength = np.abs(m[N_OUT:N_OUT + anchor].sum(0))
  kept = np.sort(np.argsort(-strength)[:64])
  assert strength[kept].min() >= np.median(strength)
  reff = _effective_matrix(device, N_OUT, anchor)[:, kept]
  assert _corr(got, frames @ reff) > 0.9999


def test_bit_planes_go_through_the_device_in_one_call(device):
  """input_bits: every plane of every row in one transform; with 6 bits the recombined
  projection is the device's projection of the real-valued error."""
  proj = opu.make_lightonml_projector(device, opu.OPUConfig(noise=False, bits=None,
                                                            input_bits=6))
  point = [dfax.PointSpec("a/in", (N, 64), jnp.float32)]
  e = _error()
  proj(e, point)  # sizes and calibrates the device
  calls = proj.driver.device_calls
  (got,) = proj(e, point)
  assert proj.driver.device_calls == calls + 1
  reff = _effective_matrix(device, N_OUT, proj.driver._anchor(N_OUT))
  assert _corr(got, np.asarray(e) @ reff) > 0.999
