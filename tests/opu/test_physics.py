"""Physics of the simulated OPU: ideal = digital, bits and noise, signs, keys, examples."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dfax
from dfax import opu
from dfax.opu import device

KEY, NOISE = jax.random.key(1), jax.random.key(2)
POINTS = [dfax.PointSpec("a/in", (64, 96), jnp.float32),
          dfax.PointSpec("b/in", (2, 64, 48), jnp.float32, stack_ndim=1)]


def _error(seed=0, shape=(64, 32)):
  return jax.random.normal(jax.random.key(seed), shape)


def _corr(got, want):
  a = np.concatenate([np.ravel(g) for g in got])
  b = np.concatenate([np.ravel(w) for w in want])
  return float(np.corrcoef(a, b)[0, 1])


def _project(config, e=None, noise_key=NOISE):
  e = _error() if e is None else e
  return opu.make_projector(config, key=KEY, noise_key=noise_key)(e, POINTS)


def test_ideal_mode_equals_digital_projection():
  e = _error()
  got = opu.make_projector(opu.OPUConfig.ideal(), key=KEY)(e, POINTS)
  want = opu.digital_reference(KEY)(e, POINTS)
  for g, w in zip(got, want):
    assert g.shape == w.shape
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


def test_effective_matrix_is_gaussian_with_variance_one_over_n():
  n = 32
  eye = jnp.eye(n)
  (r,) = opu.digital_reference(KEY)(eye, [dfax.PointSpec("m", (n, 4096), jnp.float32)])
  np.testing.assert_allclose(float(jnp.var(r)), 1.0 / n, rtol=0.05)
  assert abs(float(jnp.mean(r))) < 0.01


def test_correlation_rises_with_bits_and_falls_with_noise():
  ref = opu.digital_reference(KEY)(_error(), POINTS)
  base = dict(ternarize=False, noise=False)
  by_bits = [_corr(_project(opu.OPUConfig(bits=b, full_scale=40.0, **base)), ref)
             for b in (3, 5, 8, 12)]
  assert by_bits == sorted(by_bits) and by_bits[-1] > 0.999 and by_bits[0] < 0.95
  by_photons = [_corr(_project(opu.OPUConfig(ternarize=False, bits=None, noise=True,
                                             photons_per_unit=p)), ref)
                for p in (1.0, 10.0, 100.0, 10000.0)]
  assert by_photons == sorted(by_photons) and by_photons[0] < 0.9 < by_photons[-1]


def test_ternarization_keeps_signs_and_threshold():
  e = _error()
  plus, minus, magnitude = device.ternarize(e, opu.OPUConfig(threshold=0.5))
  ternary = plus - minus
  assert set(np.unique(np.asarray(plus))) <= {0.0, 1.0}
  on = np.asarray(ternary) != 0
  np.testing.assert_array_equal(np.sign(np.asarray(e))[on], np.asarray(ternary)[on])
  t = 0.5 * np.std(np.asarray(e), axis=-1, keepdims=True)
  np.testing.assert_array_equal(on, np.abs(np.asarray(e)) > t)
  assert bool(jnp.all(magnitude > 0))
  plus, minus, _ = device.ternarize(e, opu.OPUConfig(topk=0.25))
  np.testing.assert_array_equal(np.asarray((plus + minus).sum(-1)), 8)


def test_same_keys_bitwise_same_and_noise_key_matters():
  a = _project(opu.OPUConfig())
  b = _project(opu.OPUConfig())
  for u, v in zip(a, b):
    np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
  c = _project(opu.OPUConfig(), noise_key=jax.random.key(99))
  assert not np.array_equal(np.asarray(a[0]), np.asarray(c[0]))


def test_examples_are_independent():
  e = _error()
  full = _project(opu.OPUConfig(noise=False))
  e2 = e.at[10:].set(_error(seed=7)[10:])  # change every other example
  part = _project(opu.OPUConfig(noise=False), e=e2)
  np.testing.assert_allclose(full[0][:10], part[0][:10], rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(full[1][:, :10], part[1][:, :10], rtol=1e-6, atol=1e-6)


def test_noise_needs_a_key_and_bad_settings_raise():
  with pytest.raises(ValueError, match="noise_key"):
    opu.make_projector(opu.OPUConfig(), key=KEY)
  with pytest.raises(ValueError, match="bits"):
    opu.OPUConfig(bits=40)
  with pytest.raises(ValueError, match="unknown OPU settings"):
    opu.OPUConfig.from_dict({"bitz": 8})


def test_cost_model_counts_frames_and_finds_a_crossover():
  c = opu.estimate_cost(batch=128, n_out=10, width=1600)
  assert c.frames == 128 * 4  # two binary frames, two camera frames each (anchor)
  assert c.optical_time_s == pytest.approx(512 / 1500.0)
  assert c.digital_flops == 2 * 128 * 10 * 1600
  ideal_frames = opu.estimate_cost(128, 10, 1600, opu.OPUConfig(ternarize=False,
                                                                intensity=False)).frames
  assert ideal_frames == 128
  full = opu.DeviceSpec().max_output_pixels  # a full camera: keeping half its pixels needs two
  assert opu.estimate_cost(8, 10, full, opu.OPUConfig(anchor_keep=0.5)).frames == 2 * (
      opu.estimate_cost(8, 10, full).frames)
  w = opu.crossover_width(batch=1)
  assert w is not None
  small, big = opu.estimate_cost(1, w // 2, w // 2), opu.estimate_cost(1, w, w)
  assert small.optical_time_s >= small.gpu_time_s and big.optical_time_s < big.gpu_time_s


def test_anchor_keep_floors_the_anchor_and_keeps_the_effective_matrix():
  """The kept pixels' anchor intensity is at least -ln(q) times its mean and the phases (so
  the ideal projection) do not change; with the camera and noise, the weak-anchor columns
  that came back as noise are gone."""
  cols = 4096
  weak, kept = (device.anchor_field(jax.random.key(3), cols, opu.OPUConfig(anchor_keep=q),
                                    jnp.float32) for q in (1.0, 0.5))
  power = kept[0] ** 2 + kept[1] ** 2
  assert float(power.min()) >= np.log(2) * 0.999
  np.testing.assert_allclose(float(power.mean()), 1 + np.log(2), rtol=0.05)
  phase = lambda a: jnp.arctan2(a[1], a[0])
  np.testing.assert_allclose(phase(kept), phase(weak), atol=1e-5)
  ideal_kept = opu.make_projector(
      dataclasses.replace(opu.OPUConfig.ideal(), anchor_keep=0.5), key=KEY)
  for g, w in zip(ideal_kept(_error(), POINTS), opu.digital_reference(KEY)(_error(), POINTS)):
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)
  # A near-uniform prediction's error over 65 symbols, as a language model's early on.
  probs = jax.nn.softmax(0.3 * jax.random.normal(jax.random.key(0), (512, 65)))
  error = (probs - jax.nn.one_hot(jnp.arange(512) % 65, 65)) / 512
  wide = [dfax.PointSpec("h", (512, 2048), jnp.float32)]
  (ref,) = opu.digital_reference(KEY)(error, wide)
  worst = {}
  for q in (1.0, 0.5):
    (got,) = opu.make_projector(opu.OPUConfig(anchor_keep=q), key=KEY, noise_key=NOISE)(
        error, wide)
    column_error = jnp.sqrt(jnp.mean((got - ref) ** 2, 0) / jnp.mean(ref ** 2, 0))
    worst[q] = float(column_error.max())
  assert worst[1.0] > 2 and worst[0.5] < 0.5, worst


def test_bit_planes_send_the_quantised_error_and_keep_what_ternarisation_drops():
  """Noise-free, the bit planes' projection is the projection of the error quantised per sign
  to its own peak; a near-uniform prediction's wrong symbols, which one ternary pair drops
  (only the target's entry passes the threshold), come through."""
  e = _error()
  clean = dict(noise=False, bits=None)
  ref = opu.digital_reference(KEY)(e, POINTS)
  for bits in (1, 4):
    planes, scales = device.bit_planes(e, bits)
    quantised = jnp.einsum("k,skbn->sbn", 2.0 ** jnp.arange(bits - 1, -1, -1), planes) * scales
    got = _project(opu.OPUConfig(input_bits=bits, **clean))
    want = opu.digital_reference(KEY)(quantised[0] - quantised[1], POINTS)
    for g, w in zip(got, want):
      np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)
  assert _corr(_project(opu.OPUConfig(input_bits=8, **clean)), ref) > 0.9999
  probs = jax.nn.softmax(0.01 * jax.random.normal(jax.random.key(5), (64, 32)))
  target = jax.nn.one_hot(jnp.arange(64) % 32, 32)
  wrong = probs * (1 - target)
  (wrong_ref,) = opu.digital_reference(KEY)(wrong, POINTS[:1])
  (target_ref,) = opu.digital_reference(KEY)(probs * target - target, POINTS[:1])
  for config, low, high in ((opu.OPUConfig(**clean), -0.1, 0.1),
                            (opu.OPUConfig(input_bits=2, **clean), 0.95, 1.0)):
    (got,) = opu.make_projector(config, key=KEY)(probs - target, POINTS[:1])
    assert low < _corr(got - target_ref, wrong_ref) <= high, config


def test_bit_planes_take_two_frames_per_bit_and_refuse_what_they_replace():
  assert opu.OPUConfig().frames_per_row == 2
  assert opu.OPUConfig(input_bits=4).frames_per_row == 8
  assert opu.OPUConfig(ternarize=False).frames_per_row == 1
  assert opu.estimate_cost(128, 10, 1600, opu.OPUConfig(input_bits=4)).frames == 128 * 8 * 2
  with pytest.raises(ValueError, match="input_bits .* ternarize=True and without topk"):
    opu.OPUConfig(input_bits=2, topk=0.1)
  with pytest.raises(ValueError, match="input_bits must be in 1..16"):
    opu.OPUConfig(input_bits=0)
