"""Pipeline-parallel DFA and backprop on 4 and 8 host devices (tests/conftest.py sets XLA_FLAGS)."""

import functools
import importlib.util
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dfax
from dfax.models.stack import (StackConfig, StackedMLP, from_pipeline, pipeline_parts,
                               sum_cross_entropy, to_pipeline)
from dfax.parallel import feedback, make_pipeline_mesh, pipeline

_SPEC = importlib.util.spec_from_file_location(
    "hlo_schedule", pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "hlo_schedule.py")
schedule = importlib.util.module_from_spec(_SPEC)  # benchmark tooling, not part of dfax
sys.modules[_SPEC.name] = schedule
_SPEC.loader.exec_module(schedule)

KEY = jax.random.key(5)
BATCH = 16


pytestmark = pytest.mark.usefixtures("host_platform")  # 8 devices of jax.devices()


def _need(devices):
  assert jax.device_count() >= devices  # host_platform gave 8


@functools.lru_cache(maxsize=None)
def _problem(stages, cut):
  config = StackConfig(num_stages=stages, blocks_per_stage=2, cut=cut)
  model = StackedMLP(config)
  x = jax.random.normal(jax.random.key(0), (BATCH, config.d_in))
  y = jax.random.randint(jax.random.key(1), (BATCH,), 0, config.n_out)
  params = jax.jit(model.init)(jax.random.key(2), x)
  loss = lambda p, x, y: sum_cross_entropy(model.apply(p, x), y) / BATCH
  return config, params, x, y, loss


@functools.lru_cache(maxsize=None)
def _reference(stages, cut, method):
  _, params, x, y, loss = _problem(stages, cut)
  if method == "dfa":
    grad = dfax.dfa_grad(loss, projector=dfax.projectors.gaussian(KEY), feedback=dfax.FeedbackPoint)
  else:
    grad = jax.grad(loss)
  return jax.jit(grad)(params, x, y)


@functools.lru_cache(maxsize=None)
def _compiled(stages, data, micro, method, cut="stage", fb="keyed", mode="vmap", mb="scan"):
  """The compiled pipeline step and what it returns."""
  _need(stages * data)
  config, params, x, y, _ = _problem(stages, cut)
  parts, mesh = pipeline_parts(config), make_pipeline_mesh(stages, data)
  if method == "dfa":
    fbk = (feedback.keyed_dense(KEY) if fb == "keyed"
           else feedback.from_projector(dfax.projectors.gaussian(KEY)))
    fn = pipeline.dfa_pipeline(parts, mesh, micro, fbk, stage_mode=mode, microbatch_mode=mb)
  else:
    fn = pipeline.backprop_pipeline(parts, mesh, micro)
  compiled = fn.lower(to_pipeline(params), x, y).compile()
  loss, grads = compiled(to_pipeline(params), x, y)
  return compiled, float(loss), from_pipeline(grads)


def _assert_close(a, b):
  jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=2e-5, atol=2e-6), a, b)


@pytest.mark.parametrize("stages,data,micro,cut,fb,mode", [
    (4, 2, 2, "stage", "projector", "vmap"),   # 4 stages x 2 data shards = 8 devices
    (8, 1, 2, "stage", "keyed", "vmap"),       # 8 stages
    (4, 1, 2, "block", "keyed", "vmap"),       # a cut after every block: layer-parallel
])
@pytest.mark.slow
def test_dfa_pipeline_equals_one_device_dfa(stages, data, micro, cut, fb, mode):
  _, loss, grads = _compiled(stages, data, micro, "dfa", cut, fb, mode)
  _, params, x, y, loss_fn = _problem(stages, cut)
  assert loss == pytest.approx(float(jax.jit(loss_fn)(params, x, y)), rel=1e-5)
  ref = _reference(stages, cut, "dfa")
  _assert_close(grads, ref)
  if (stages, cut) == (4, "stage"):  # and DFA is not backprop: the hidden stages differ
    bp = _reference(stages, cut, "bp")
    first = lambda g: g["params"]["stages"]["blocks"]["fc1"]["kernel"][0]
    assert not np.allclose(first(grads), first(bp), rtol=1e-2, atol=1e-4)


def test_backprop_pipeline_equals_jax_grad():
  _, loss, grads = _compiled(4, 2, 2, "bp")
  _, params, x, y, loss_fn = _problem(4, "stage")
  assert loss == pytest.approx(float(jax.jit(loss_fn)(params, x, y)), rel=1e-5)
  _assert_close(grads, _reference(4, "stage", "bp"))


def test_dfa_backward_has_no_transfer_chain_and_a_shorter_critical_path():
  stages, micro = 4, 2
  dfa = schedule.analyze(_compiled(stages, 2, micro, "dfa", "stage", "projector")[0].as_text())
  bp = schedule.analyze(_compiled(stages, 2, micro, "bp")[0].as_text())
  steps = micro + stages - 1
  assert bp.permutes == {"forward": steps - 1, "backward": steps - 1}, bp
  assert dfa.permutes == {"forward": steps - 1, "backward": 0}, dfa
  assert bp.path_permutes == 2 * (steps - 1) and dfa.path_permutes == steps - 1
  # the backward bubble: bp runs M + S - 1 stage backwards in a chain, DFA M, all at once
  stage_backward = bp.backward_flops / steps
  saved = bp.critical_flops - dfa.critical_flops
  assert saved >= 0.9 * (stages - 1) * stage_backward, (saved, stage_backward)


def test_block_cut_stage_and_microbatch_modes_agree():
  _, _, vmap_scan = _compiled(4, 1, 2, "dfa", "block", "keyed", "vmap")  # cached
  _assert_close(_compiled(4, 1, 2, "dfa", "block", "keyed", "scan", "vmap")[2], vmap_scan)



def test_bad_input_is_named():
  _need(4)
  config, params, x, y, _ = _problem(4, "stage")
  parts, mesh = pipeline_parts(config), make_pipeline_mesh(4)
  fbk = feedback.keyed_dense(KEY)
  with pytest.raises(ValueError, match="not divisible"):
    pipeline.dfa_pipeline(parts, mesh, 3, fbk)(to_pipeline(params), x, y)
  with pytest.raises(ValueError, match="mesh has 2 stages"):
    pipeline.dfa_pipeline(parts, make_pipeline_mesh(2), 2, fbk)(to_pipeline(params), x, y)
  with pytest.raises(ValueError, match="'embed', 'stages', 'head'"):
    pipeline.backprop_pipeline(parts, mesh, 2)(params, x, y)
  with pytest.raises(ValueError, match="microbatch_mode"):
    pipeline.dfa_pipeline(parts, mesh, 2, fbk, microbatch_mode="loop")
  with pytest.raises(ValueError, match="stage_mode"):
    pipeline.dfa_pipeline(parts, mesh, 2, fbk, stage_mode="fast")
  with pytest.raises(ValueError, match="device_count=64"):
    make_pipeline_mesh(64)
  with pytest.raises(ValueError, match="cut must be"):
    StackConfig(cut="layer")


def test_train_step_applies_the_pipeline_gradients():
  import optax
  _need(8)
  config, params, x, y, _ = _problem(4, "stage")
  mesh = make_pipeline_mesh(4, 2)
  grad_fn = pipeline.dfa_pipeline(pipeline_parts(config), mesh, 2,
                                  feedback.from_projector(dfax.projectors.gaussian(KEY)))
  opt = optax.sgd(0.5)
  placed = pipeline.place(jax.tree.map(jnp.copy, to_pipeline(params)), mesh)  # step donates
  assert placed["stages"]["blocks"]["fc1"]["kernel"].sharding.spec[0] == "stage"
  _, ref_loss, grads = _compiled(4, 2, 2, "dfa", "stage", "projector")
  expect = jax.tree.map(lambda p, g: p - 0.5 * g, params, grads)
  new, _, loss = pipeline.train_step(grad_fn, opt)(placed, opt.init(placed), x, y)
  assert float(loss) == pytest.approx(ref_loss, rel=1e-6)
  _assert_close(from_pipeline(new), expect)
