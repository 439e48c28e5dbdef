"""Flax NNX: the same Nøkland exactness test as linen, on an unmodified NNX model."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import dfax
import dfax.nnx


class TanhMLP(nnx.Module):
  def __init__(self, rngs: nnx.Rngs):
    self.l0 = nnx.Linear(20, 32, rngs=rngs)
    self.l1 = nnx.Linear(32, 24, rngs=rngs)
    self.head = nnx.Linear(24, 10, rngs=rngs)

  def __call__(self, x):
    return self.head(jnp.tanh(self.l1(jnp.tanh(self.l0(x)))))


def _data():
  kx, ky = jax.random.split(jax.random.key(0))
  return jax.random.normal(kx, (16, 20)), jax.random.randint(ky, (16,), 0, 10)


def loss_fn(model, x, y):
  return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()


def test_nnx_matches_handwritten_nokland_dfa():
  model = TanhMLP(nnx.Rngs(1))
  x, y = _data()
  k1, k2 = jax.random.split(jax.random.key(7))
  mats = {"l1/in": jax.random.normal(k1, (10, 32)), "head/in": jax.random.normal(k2, (10, 24))}
  projector = lambda e, points: [e @ mats[p.path] for p in points]
  grads = dfax.nnx.dfa_grad(loss_fn, projector=projector)(model, x, y)

  w = lambda layer: (layer.kernel.value, layer.bias.value)
  (w0, b0), (w1, b1), (w2, b2) = w(model.l0), w(model.l1), w(model.head)
  h0 = jnp.tanh(x @ w0 + b0)
  h1 = jnp.tanh(h0 @ w1 + b1)
  e = (jax.nn.softmax(h1 @ w2 + b2) - jax.nn.one_hot(y, 10)) / x.shape[0]
  d1 = (e @ mats["head/in"]) * (1 - h1 ** 2)
  d0 = (e @ mats["l1/in"]) * (1 - h0 ** 2)
  want = {"l0": (x.T @ d0, d0.sum(0)), "l1": (h0.T @ d1, d1.sum(0)), "head": (h1.T @ e, e.sum(0))}
  for name, (dk, db) in want.items():
    np.testing.assert_allclose(grads[name]["kernel"].value, dk, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grads[name]["bias"].value, db, rtol=1e-5, atol=1e-6)
  bp = nnx.grad(loss_fn)(model, x, y)
  np.testing.assert_allclose(grads["head"]["kernel"].value, bp["head"]["kernel"].value, rtol=1e-5)


def test_nnx_optimizer_step_jit_and_model_untouched():
  model = TanhMLP(nnx.Rngs(1))
  x, y = _data()
  call_before = nnx.Linear.__call__
  optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)

  @nnx.jit
  def step(model, optimizer, x, y):
    loss, grads = dfax.nnx.dfa_value_and_grad(loss_fn)(model, x, y)
    optimizer.update(model, grads)
    return loss

  losses = [float(step(model, optimizer, x, y)) for _ in range(30)]
  assert losses[-1] < 0.5 * losses[0]
  assert nnx.Linear.__call__ is call_before


def test_nnx_marker_and_no_points_error():
  class Marked(nnx.Module):
    def __init__(self, rngs):
      self.a = nnx.Linear(4, 8, rngs=rngs)
      self.fb = dfax.nnx.FeedbackPoint()
      self.b = nnx.Linear(8, 3, rngs=rngs)

    def __call__(self, x):
      return self.b(self.fb(jnp.tanh(self.a(x))))

  model = Marked(nnx.Rngs(0))
  x = jnp.ones((2, 4))
  paths = []

  def projector(error, points):
    paths.extend(p.path for p in points)
    return [jnp.zeros(p.shape) for p in points]

  dfax.nnx.dfa_grad(lambda m: m(x).sum(), projector=projector,
                    feedback=dfax.nnx.FeedbackPoint)(model)
  assert paths == ["fb/in"]
  with pytest.raises(ValueError, match="no feedback points found"):
    dfax.nnx.dfa_grad(lambda m: m(x).sum(), feedback=nnx.Conv)(model)
