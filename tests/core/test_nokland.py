"""dfa_grad against a hand-written Nøkland (2016) DFA of a tanh MLP."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import dfax


class TanhMLP(nn.Module):
  widths: tuple = (32, 24)
  num_classes: int = 10

  @nn.compact
  def __call__(self, x):
    for w in self.widths:
      x = nn.tanh(nn.Dense(w)(x))
    return nn.Dense(self.num_classes)(x)


def _setup(seed=0, batch=16, d_in=20):
  model = TanhMLP()
  kx, ky, kp = jax.random.split(jax.random.key(seed), 3)
  x = jax.random.normal(kx, (batch, d_in))
  y = jax.random.randint(ky, (batch,), 0, 10)
  params = model.init(kp, x)
  return model, params, x, y


def _loss_fn(model):
  def loss_fn(params, x, y):
    logits = model.apply(params, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
  return loss_fn


def explicit_projector(matrices):
  """Projects with given matrices by point path: error @ B[path]."""
  def projector(error, points):
    return [error @ matrices[p.path] for p in points]
  return projector


def nokland_grads(params, x, y, matrices):
  """Plain-JAX DFA: dW_k = h_{k-1}^T ((B_k e) * f'(a_k)), last layer exact."""
  p = params["params"]
  a0 = x @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"]
  h0 = jnp.tanh(a0)
  a1 = h0 @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"]
  h1 = jnp.tanh(a1)
  logits = h1 @ p["Dense_2"]["kernel"] + p["Dense_2"]["bias"]
  e = (jax.nn.softmax(logits) - jax.nn.one_hot(y, 10)) / x.shape[0]
  d1 = (e @ matrices["Dense_2/in"]) * (1 - h1 ** 2)
  d0 = (e @ matrices["Dense_1/in"]) * (1 - h0 ** 2)
  return {"params": {
      "Dense_0": {"kernel": x.T @ d0, "bias": d0.sum(0)},
      "Dense_1": {"kernel": h0.T @ d1, "bias": d1.sum(0)},
      "Dense_2": {"kernel": h1.T @ e, "bias": e.sum(0)},
  }}


@pytest.fixture
def matrices():
  k1, k2 = jax.random.split(jax.random.key(7))
  return {"Dense_1/in": jax.random.normal(k1, (10, 32)),
          "Dense_2/in": jax.random.normal(k2, (10, 24))}


def test_every_layer_matches_handwritten_dfa(matrices):
  model, params, x, y = _setup()
  got = dfax.dfa_grad(_loss_fn(model), projector=explicit_projector(matrices))(params, x, y)
  want = nokland_grads(params, x, y, matrices)
  jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6), got, want)


def test_output_layer_equals_backprop_and_hidden_layers_do_not(matrices):
  model, params, x, y = _setup()
  dfa = dfax.dfa_grad(_loss_fn(model), projector=explicit_projector(matrices))(params, x, y)
  bp = jax.grad(_loss_fn(model))(params, x, y)
  np.testing.assert_allclose(dfa["params"]["Dense_2"]["kernel"], bp["params"]["Dense_2"]["kernel"],
                             rtol=1e-5, atol=1e-7)
  assert not np.allclose(dfa["params"]["Dense_0"]["kernel"], bp["params"]["Dense_0"]["kernel"])


def test_projector_sees_points_in_forward_order_without_raw_input():
  model, params, x, y = _setup()
  seen = []

  def recording(error, points):
    seen.extend((p.path, p.shape) for p in points)
    return [jnp.zeros(p.shape) for p in points]

  dfax.dfa_grad(_loss_fn(model), projector=recording)(params, x, y)
  assert seen == [("Dense_1/in", (16, 32)), ("Dense_2/in", (16, 24))]


def test_builtin_gaussian_is_the_keyed_matrix():
  model, params, x, y = _setup()
  key = jax.random.key(3)
  # One tile per matrix here: tile 0 is drawn from fold_in(path_key, 0).
  tile_key = lambda p: jax.random.fold_in(dfax.projectors.path_key(key, p), 0)
  mats = {p: jax.random.normal(tile_key(p), (10, w)) / np.sqrt(10)
          for p, w in (("Dense_1/in", 32), ("Dense_2/in", 24))}
  got = dfax.dfa_grad(_loss_fn(model), projector=dfax.projectors.gaussian(key))(params, x, y)
  want = nokland_grads(params, x, y, mats)
  jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6), got, want)


def test_default_call_needs_no_keywords_and_is_deterministic():
  model, params, x, y = _setup()
  g1 = dfax.dfa_grad(_loss_fn(model))(params, x, y)
  g2 = jax.jit(dfax.dfa_grad(_loss_fn(model)))(params, x, y)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), g1, g2)
