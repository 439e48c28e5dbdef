"""One table, every projector: the contract ``dfax.Projector`` states.

For each entry: shapes and dtypes, stacked copies (distinct, or equal when
tied), jit and vmap, determinism per key, the feedback's dependence on the
error, and bad options refused when the projector is built (not traced).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dfax
from dfax import PointSpec
from dfax.opu import OPUConfig, make_projector as opu_projector


@dataclasses.dataclass(frozen=True)
class Entry:
  make: Callable[..., Any]          # (key, **options) -> projector
  random: bool = True               # the feedback depends on the key
  ties: bool = False                # takes tie_copies
  linear: bool = True               # feedback(2 e) == 2 feedback(e)
  bad_options: tuple = ()           # kwargs each refused at construction


def _opu(key, **options):
  return opu_projector(OPUConfig.ideal(), key=key, **options)


def _noisy_opu(key, **options):
  return opu_projector(OPUConfig(tile=64), key=key, noise_key=jax.random.key(7), **options)


def _rademacher_rows(error2d, point_key, width):  # a keyed row projection for per_point
  signs = jax.random.rademacher(point_key, (error2d.shape[-1], width), jnp.float32)
  return error2d @ signs.astype(error2d.dtype)


def _host_device(key, **options):
  """A numpy stand-in device with a medium fixed by ``key``, behind ``host_device``."""
  seed = int(np.asarray(jax.random.key_data(key)).sum())

  def device(rows, total):
    return rows @ np.random.default_rng(seed).standard_normal((rows.shape[1], total))

  return dfax.projectors.host_device(device, **options)


def _host_projector(key, **options):
  """Per-point numpy code behind ``host_projector``: a matrix per point, from ``key``."""
  seed = int(np.asarray(jax.random.key_data(key)).sum())

  def per_point(error, points):
    out = []
    for i, p in enumerate(points):
      lead = p.unstacked_shape[:error.ndim - 1]
      width = int(np.prod(p.unstacked_shape[len(lead):]))
      medium = np.random.default_rng([seed, i]).standard_normal(
          (error.shape[-1], p.num_copies * width))
      rows = error.reshape(-1, error.shape[-1]) @ medium
      rows = np.moveaxis(rows.reshape(-1, p.num_copies, width), 1, 0)
      out.append(rows.reshape(p.shape).astype(error.dtype))
    return out

  return dfax.projectors.host_projector(per_point, **options)


PROJECTORS = {
    "gaussian": Entry(dfax.projectors.gaussian, ties=True, bad_options=(
        {"scale": "wide"}, {"feature_ndim": 0}, {"scale": None})),
    "uniform": Entry(dfax.projectors.uniform, ties=True, bad_options=(
        {"scale": "wide"}, {"feature_ndim": -1})),
    "dense": Entry(dfax.projectors.dense, ties=True, bad_options=(
        {"distribution": "cauchy"}, {"scale": "wide"})),
    "shared": Entry(dfax.projectors.shared, ties=True, bad_options=(
        {"distribution": "cauchy"}, {"feature_ndim": 0}, {"scale": "wide"})),
    "shared_reuse": Entry(lambda key, **o: dfax.projectors.shared(key, reuse=True, **o),
                          ties=True),
    "hadamard": Entry(dfax.projectors.hadamard, ties=True, bad_options=(
        {"scale": "point"}, {"scale": "wide"}, {"feature_ndim": 0})),
    "per_point": Entry(lambda key, **o: dfax.projectors.per_point(_rademacher_rows, key, **o),
                       ties=True, bad_options=({"feature_ndim": 0},)),
    "opu_ideal": Entry(_opu, ties=True, bad_options=({"feature_ndim": 0},)),
    "opu": Entry(_noisy_opu, linear=False, ties=True),
    "host_projector": Entry(_host_projector),
    "host_device": Entry(_host_device, ties=True, bad_options=({"feature_ndim": 0},)),
    "zeros": Entry(lambda key, **o: dfax.projectors.zeros(**o), random=False),
    "identity": Entry(lambda key, **o: dfax.projectors.identity(**o), random=False),
}
NAMES = sorted(PROJECTORS)
SLOW = {"opu"}  # the noisy simulated OPU: eager, many small ops (in the full suite only)


def _names(names):
  return [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in names]
BATCH, N_OUT = 4, 6


def _points(dtype=jnp.float32):
  return [PointSpec("Dense_0/in", (BATCH, 10), dtype),
          PointSpec("blocks/Dense_0/in", (3, BATCH, 8), dtype, stack_ndim=1),
          PointSpec("conv/in", (BATCH, 5, 5, 2), dtype)]


def _error(seed=0):
  return jax.random.normal(jax.random.key(seed), (BATCH, N_OUT))


def _identity_like(name):
  # identity hands each point the error itself: only for points of the error's shape
  return name == "identity"


def _run(name, points=None, key=0, error=None, **options):
  points = points or (_points() if not _identity_like(name) else
                      [PointSpec("a/in", (BATCH, N_OUT), jnp.float32),
                       PointSpec("s/in", (3, BATCH, N_OUT), jnp.float32, stack_ndim=1)])
  proj = PROJECTORS[name].make(jax.random.key(key), **options)
  return proj(_error() if error is None else error, points), points


@pytest.mark.parametrize("name", _names(NAMES))
def test_is_a_projector(name):
  assert isinstance(PROJECTORS[name].make(jax.random.key(0)), dfax.Projector)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("name", _names(NAMES))
def test_one_cotangent_per_point_of_its_shape(name, dtype):
  points = (_points(dtype) if not _identity_like(name)
            else [PointSpec("a/in", (BATCH, N_OUT), dtype)])
  out, _ = _run(name, points)
  assert isinstance(out, (list, tuple)) and len(out) == len(points)
  for c, p in zip(out, points):
    assert c.shape == p.shape
    assert jnp.issubdtype(c.dtype, jnp.floating)
    assert np.isfinite(np.asarray(c, np.float32)).all()


@pytest.mark.parametrize("name", _names(NAMES))
def test_under_jit_equals_eager(name):
  eager, points = _run(name)
  proj = PROJECTORS[name].make(jax.random.key(0))
  jitted = jax.jit(lambda e: proj(e, points))(_error())
  for a, b in zip(eager, jitted):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", _names(NAMES))
def test_under_vmap_equals_one_call_per_error(name):
  """vmap over a leading axis of errors (e.g. per-microbatch feedback) changes nothing."""
  _, points = _run(name)
  proj = PROJECTORS[name].make(jax.random.key(0))
  errors = jnp.stack([_error(1), _error(2)])
  batched = jax.vmap(lambda e: proj(e, points))(errors)
  for i in range(2):
    single = proj(errors[i], points)
    for a, b in zip(batched, single):
      np.testing.assert_allclose(np.asarray(a[i]), np.asarray(b), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", _names(NAMES))
def test_same_key_same_feedback_other_key_other_feedback(name):
  a, _ = _run(name, key=0)
  b, _ = _run(name, key=0)
  c, _ = _run(name, key=1)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  differs = any(not np.allclose(np.asarray(x), np.asarray(z)) for x, z in zip(a, c))
  assert differs == PROJECTORS[name].random


@pytest.mark.parametrize("name", _names(NAMES))
def test_feedback_follows_the_error(name):
  """Linear projectors scale with the error; none but the zero control ignores it."""
  a, _ = _run(name, error=_error())
  b, _ = _run(name, error=2 * _error())
  if name == "zeros":
    assert all(not np.asarray(x).any() for x in a + b)
    return
  for x, y in zip(a, b):
    assert not np.allclose(np.asarray(x), np.asarray(y))
    if PROJECTORS[name].linear:
      np.testing.assert_allclose(np.asarray(y), 2 * np.asarray(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", [n for n in NAMES if PROJECTORS[n].random])
def test_stacked_copies_are_distinct_points(name):
  out, points = _run(name)
  stacked = np.asarray(out[1])
  assert points[1].num_copies == 3
  assert not np.allclose(stacked[0], stacked[1]) and not np.allclose(stacked[1], stacked[2])


@pytest.mark.parametrize("name", [n for n in NAMES if PROJECTORS[n].ties])
def test_tied_copies_share_one_projection(name):
  out, _ = _run(name, tie_copies=True)
  stacked = np.asarray(out[1])
  np.testing.assert_allclose(stacked[0], stacked[1], rtol=1e-6)
  np.testing.assert_allclose(stacked[0], stacked[2], rtol=1e-6)


@pytest.mark.parametrize("name,options", [(n, o) for n in NAMES
                                          for o in PROJECTORS[n].bad_options])
def test_bad_options_are_refused_when_built(name, options):
  with pytest.raises(ValueError, match="dfax"):
    PROJECTORS[name].make(jax.random.key(0), **options)


def test_noisy_opu_without_noise_key_is_refused_when_built():
  with pytest.raises(ValueError, match="noise_key"):
    opu_projector(OPUConfig(noise=True), key=jax.random.key(0))


def test_every_cli_projector_is_in_the_table():
  """The CLI's projectors (dfax.train.methods.PROJECTORS) all pass this contract."""
  from dfax.train import methods  # noqa: PLC0415
  covered = {"gaussian", "uniform", "hadamard", "shared", "opu", "zeros", "identity"}
  assert set(methods.PROJECTORS) <= covered and covered <= set(PROJECTORS)


def test_every_exported_projector_factory_is_in_the_table():
  helpers = {"path_key", "copy_keys", "columns_on_host"}  # keys and the callback, not projectors
  factories = set(dfax.projectors.__all__) - helpers
  assert factories <= set(PROJECTORS), f"not in the contract table: {factories - set(PROJECTORS)}"


def test_host_device_hands_each_point_its_columns_of_one_pass():
  """The device sees every error row once; point slices follow one another, copies in a row."""
  medium = np.random.default_rng(0).standard_normal((N_OUT, 8 + 3 * 6))
  calls = []

  def device(rows, total):
    calls.append(rows.shape)
    return rows @ medium[:, :total]

  points = [PointSpec("a/in", (BATCH, 8), jnp.float32),
            PointSpec("s/in", (3, BATCH, 6), jnp.float32, stack_ndim=1)]
  error = _error()
  a, s = dfax.projectors.host_device(device)(error, points)
  assert calls == [(BATCH, N_OUT)]
  full = np.asarray(error) @ medium
  np.testing.assert_allclose(a, full[:, :8], rtol=1e-5)
  for copy in range(3):
    np.testing.assert_allclose(s[copy], full[:, 8 + 6 * copy:8 + 6 * (copy + 1)], rtol=1e-5)
