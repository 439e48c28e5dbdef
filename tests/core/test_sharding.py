"""shard_map (with varying-axis checks) and pmap over the 8 host CPU devices (any backend)."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh, PartitionSpec as P

import dfax


class MLP(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = nn.tanh(nn.Dense(32)(x))
    x = nn.tanh(nn.Dense(32)(x))
    return nn.Dense(10)(x)


def _setup(batch=32):
  model = MLP()
  kx, ky = jax.random.split(jax.random.key(0))
  x = jax.random.normal(kx, (batch, 20))
  y = jax.random.randint(ky, (batch,), 0, 10)
  params = model.init(jax.random.key(1), x)
  loss_fn = lambda p, x, y: optax.softmax_cross_entropy_with_integer_labels(
      model.apply(p, x), y).mean()
  return params, x, y, loss_fn


def _assert_close(a, b):
  jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-7), a, b)


def _global_mean_loss(loss_fn, global_batch):
  """Local loss scaled so that summing over devices gives the global mean."""
  return lambda p, x, y: loss_fn(p, x, y) * x.shape[0] / global_batch


@pytest.mark.parametrize("projector", ["gaussian", "shared"])
@pytest.mark.slow
def test_shard_map_follows_jax_grad_conventions(projector, cpu_devices):
  # With shard_map's varying-axis types, jax.grad sums the gradient of
  # replicated params over devices itself; dfa_grad must do exactly the same.
  params, x, y, loss_fn = _setup()
  proj = getattr(dfax.projectors, projector)(jax.random.key(4))
  mesh = Mesh(np.array(cpu_devices), ("data",))
  local_loss = _global_mean_loss(loss_fn, x.shape[0])

  def sharded(grad_transform):
    return jax.jit(jax.shard_map(grad_transform(local_loss), mesh=mesh,
                                 in_specs=(P(), P("data"), P("data")), out_specs=P()))

  dfa = functools.partial(dfax.dfa_grad, projector=proj)
  _assert_close(sharded(jax.grad)(params, x, y), jax.grad(loss_fn)(params, x, y))
  _assert_close(sharded(dfa)(params, x, y), dfa(loss_fn)(params, x, y))


@pytest.mark.slow
def test_shard_map_unchecked_gives_per_device_grads_then_pmean_like_pmap(cpu_devices):
  params, x, y, loss_fn = _setup()
  mesh = Mesh(np.array(cpu_devices), ("data",))
  grad_fn = dfax.dfa_grad(loss_fn)

  @functools.partial(jax.shard_map, mesh=mesh, in_specs=(P(), P("data"), P("data")),
                     out_specs=(P("data"), P()), check_vma=False)
  def local(params, x, y):
    g = grad_fn(params, x, y)  # never averaged by dfa_grad itself
    return jax.tree.map(lambda a: a[None], g), jax.lax.pmean(g, "data")

  per_device, averaged = local(params, x, y)
  _assert_close(jax.tree.map(lambda a: a[0], per_device), grad_fn(params, x[:4], y[:4]))
  _assert_close(averaged, grad_fn(params, x, y))


@pytest.mark.slow
def test_replicated_zero_cotangent_is_accepted_under_shard_map(cpu_devices):
  # A projector returning jnp.zeros (not varying over 'data') must not be rejected.
  params, x, y, loss_fn = _setup()
  zeros = lambda error, points: [jnp.zeros(p.shape, p.dtype) for p in points]
  mesh = Mesh(np.array(cpu_devices), ("data",))

  @functools.partial(jax.shard_map, mesh=mesh, in_specs=(P(), P("data"), P("data")),
                     out_specs=P())
  def sharded(params, x, y):
    local_loss = _global_mean_loss(loss_fn, 32)
    return dfax.dfa_grad(local_loss, projector=zeros)(params, x, y)

  g = sharded(params, x, y)
  bp = jax.grad(loss_fn)(params, x, y)
  # Zero feedback: hidden layers get nothing, the output layer its true gradient.
  assert float(jnp.abs(g["params"]["Dense_0"]["kernel"]).max()) == 0.0
  _assert_close(g["params"]["Dense_2"], bp["params"]["Dense_2"])


@pytest.mark.slow
def test_pmap_with_pmean_equals_one_device(cpu_devices):
  params, x, y, loss_fn = _setup()
  grad_fn = dfax.dfa_grad(loss_fn)
  pm = jax.pmap(lambda p, x, y: jax.lax.pmean(grad_fn(p, x, y), "i"), axis_name="i",
                in_axes=(None, 0, 0), devices=cpu_devices)
  g = pm(params, x.reshape(8, 4, 20), y.reshape(8, 4))
  _assert_close(jax.tree.map(lambda a: a[0], g), grad_fn(params, x, y))
