"""Sharded DFA training on 8 host devices: equal to one device, no extra collectives."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import dfax
from dfax import parallel



pytestmark = pytest.mark.usefixtures("host_platform")  # 8 devices of jax.devices()

class MLP(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = nn.tanh(nn.Dense(64)(x))
    x = nn.tanh(nn.Dense(64)(x))
    return nn.Dense(8)(x)


def _problem():
  model = MLP()
  x = jax.random.normal(jax.random.key(0), (32, 16))
  y = jax.random.randint(jax.random.key(1), (32,), 0, 8)
  params = model.init(jax.random.key(2), x)
  loss = lambda p, x, y: optax.softmax_cross_entropy_with_integer_labels(
      model.apply(p, x), y).mean()
  opt = optax.adam(1e-2)
  return loss, params, opt, x, y


def _step(value_and_grad, loss, opt):
  def step(params, opt_state, x, y):
    value, grads = value_and_grad(loss)(params, x, y)
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, value
  return step


def _sharded(step, mesh, params, opt_state):
  ps, os_ = parallel.shard_params(params, mesh), parallel.shard_params(opt_state, mesh)
  bs = parallel.batch_sharding(mesh)
  return jax.jit(step, in_shardings=(ps, os_, bs, bs), out_shardings=(ps, os_, None))


@pytest.mark.slow
def test_dfa_steps_on_a_4x2_mesh_equal_one_device():
  loss, params, opt, x, y = _problem()
  step = _step(dfax.dfa_value_and_grad, loss, opt)
  mesh = parallel.make_mesh(4, 2)
  sharded = _sharded(step, mesh, params, opt.init(params))
  p1, s1 = params, opt.init(params)
  p8, s8 = params, opt.init(params)
  for _ in range(3):
    p1, s1, v1 = jax.jit(step)(p1, s1, x, y)
    p8, s8, v8 = sharded(p8, s8, x, y)
  np.testing.assert_allclose(v8, v1, rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), p8, p1)
  kernel = p8["params"]["Dense_1"]["kernel"]
  assert kernel.sharding.spec == jax.sharding.PartitionSpec(None, "model") or \
      kernel.sharding.spec == jax.sharding.PartitionSpec("model", None)


def test_dfa_adds_no_collectives_over_backprop():
  loss, params, opt, x, y = _problem()
  mesh = parallel.make_mesh(4, 2)
  counts = {}
  for name, vg in (("bp", jax.value_and_grad), ("dfa", dfax.dfa_value_and_grad)):
    fn = _sharded(_step(vg, loss, opt), mesh, params, opt.init(params))
    hlo = fn.lower(params, opt.init(params), x, y).compile().as_text()
    counts[name] = parallel.count_collectives(hlo)
  assert sum(counts["bp"].values()) > 0  # the sharded step does communicate
  assert sum(counts["dfa"].values()) <= sum(counts["bp"].values()), counts


def test_mesh_errors_and_specs():
  with pytest.raises(ValueError, match="xla_force_host_platform_device_count"):
    parallel.make_mesh(64, 2)
  assert parallel.param_spec(jnp.ones((6, 4)), 2) == jax.sharding.PartitionSpec("model", None)
  assert parallel.param_spec(jnp.ones((5,)), 2) == jax.sharding.PartitionSpec()
  assert parallel.count_collectives("%a = f32[2] all-reduce(%b)\n%c = f32[2] add(%a, %a)") == {
      "all-reduce": 1, "all-gather": 0, "reduce-scatter": 0, "collective-permute": 0,
      "all-to-all": 0}
