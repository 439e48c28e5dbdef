"""jax.grad conventions, composition with jit/optax, CNN and Transformer models."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import dfax


class MLP(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = nn.tanh(nn.Dense(16)(x))
    x = nn.tanh(nn.Dense(16)(x))
    return nn.Dense(4)(x)


def _data(batch=8, d=6, seed=0):
  kx, ky = jax.random.split(jax.random.key(seed))
  return jax.random.normal(kx, (batch, d)), jax.random.randint(ky, (batch,), 0, 4)


def _ce(logits, y):
  return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def test_argnums_tuple_and_has_aux_follow_jax_conventions():
  model = MLP()
  x, y = _data()
  params = model.init(jax.random.key(1), x)

  def loss_fn(params, x, scale):
    logits = model.apply(params, x) * scale
    return _ce(logits, y), {"logits": logits}

  grads, aux = dfax.dfa_grad(loss_fn, argnums=(0, 2), has_aux=True)(params, x, 2.0)
  assert isinstance(grads, tuple) and len(grads) == 2
  assert jax.tree.structure(grads[0]) == jax.tree.structure(params)
  assert jnp.shape(grads[1]) == ()
  assert aux["logits"].shape == (8, 4)
  (value, aux2), grads2 = dfax.dfa_value_and_grad(loss_fn, argnums=(0, 2), has_aux=True)(
      params, x, 2.0)
  np.testing.assert_allclose(value, loss_fn(params, x, 2.0)[0], rtol=1e-6)
  # The scalar's gradient is exact: only the output-side tail depends on it.
  bp = jax.grad(lambda s: loss_fn(params, x, s)[0])(2.0)
  np.testing.assert_allclose(grads2[1], bp, rtol=1e-5)


def test_argnums_int_on_second_argument_differentiates_params():
  model = MLP()
  x, y = _data()
  params = model.init(jax.random.key(1), x)
  g = dfax.dfa_grad(lambda x, p: _ce(model.apply(p, x), y), argnums=1)(x, params)
  assert jax.tree.structure(g) == jax.tree.structure(params)


def test_differentiating_the_input_projects_the_error_to_it():
  """With x differentiated, the values that depend on x are the points; the first Dense's
  input is x itself, so dL/dx is exactly the cotangent the projector hands that point."""
  model = MLP()
  x, y = _data()
  params = model.init(jax.random.key(1), x)
  loss = lambda x: _ce(model.apply(params, x), y)
  handed = {}
  gaussian = dfax.projectors.gaussian(jax.random.key(3))

  def recording(error, points):
    out = gaussian(error, points)
    handed.update({p.path: c for p, c in zip(points, out)})
    return out

  dfa = dfax.dfa_grad(loss, projector=recording)(x)
  first = [path for path in handed if path.startswith("Dense_0")]
  assert first, sorted(handed)
  np.testing.assert_allclose(dfa, handed[first[0]], rtol=1e-6)
  assert not np.allclose(dfa, jax.grad(loss)(x), atol=1e-3)  # DFA, not backprop


def test_jit_matches_eager_and_optax_step_runs():
  model = MLP()
  x, y = _data()
  params = model.init(jax.random.key(1), x)
  loss_fn = lambda p, x, y: _ce(model.apply(p, x), y)
  eager = dfax.dfa_grad(loss_fn)(params, x, y)
  jitted = jax.jit(dfax.dfa_grad(loss_fn))(params, x, y)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), eager, jitted)
  opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-2))
  state = opt.init(params)
  updates, state = opt.update(jitted, state, params)
  new = optax.apply_updates(params, updates)
  assert jax.tree.structure(new) == jax.tree.structure(params)


class CNN(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Conv(4, (3, 3))(x))
    x = nn.avg_pool(x, (2, 2), (2, 2))
    x = nn.relu(nn.Conv(6, (3, 3))(x))
    x = x.reshape(x.shape[0], -1)
    return nn.Dense(3)(x)


def test_cnn_points_and_manual_conv_dfa():
  model = CNN()
  x = jax.random.normal(jax.random.key(0), (5, 8, 8, 1))
  y = jnp.arange(5) % 3
  params = model.init(jax.random.key(1), x)
  seen = {}

  def projector(error, points):
    seen.update({p.path: p.shape for p in points})
    return dfax.projectors.gaussian(jax.random.key(2))(error, points)

  loss_fn = lambda p: _ce(model.apply(p, x), y)
  g = dfax.dfa_grad(loss_fn, projector=projector)(params)
  assert seen == {"Conv_1/in": (5, 4, 4, 4), "Dense_0/in": (5, 96)}
  # Reference: cotangent at Conv_1's input, back-propagated through avg_pool, relu, Conv_0.
  c = dfax.projectors.gaussian(jax.random.key(2))(
      jax.grad(lambda logits: _ce(logits, y))(model.apply(params, x)),
      [dfax.PointSpec("Conv_1/in", (5, 4, 4, 4), jnp.float32)])[0]

  def first_segment(p0):
    h = nn.relu(nn.Conv(4, (3, 3)).apply({"params": p0}, x))
    return nn.avg_pool(h, (2, 2), (2, 2))

  _, vjp = jax.vjp(first_segment, params["params"]["Conv_0"])
  (want,) = vjp(c)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
               g["params"]["Conv_0"], want)


class Block(nn.Module):
  d: int = 16

  @nn.compact
  def __call__(self, x):
    h = nn.LayerNorm()(x)
    x = x + nn.SelfAttention(num_heads=2, qkv_features=self.d, deterministic=True)(h)
    h = nn.LayerNorm()(x)
    return x + nn.Dense(self.d)(nn.gelu(nn.Dense(2 * self.d)(h)))


class TinyTransformer(nn.Module):
  vocab: int = 11
  d: int = 16
  layers: int = 3

  @nn.compact
  def __call__(self, tokens):
    x = nn.Embed(self.vocab, self.d)(tokens)
    for _ in range(self.layers):
      x = Block(self.d)(x)
    return nn.Dense(self.vocab)(nn.LayerNorm()(x))


@pytest.mark.slow
def test_transformer_one_point_per_block_macro():
  model = TinyTransformer()
  tokens = jax.random.randint(jax.random.key(0), (2, 5), 0, 11)
  params = model.init(jax.random.key(1), tokens)
  seen = []

  def projector(error, points):
    seen.extend((p.path, p.shape) for p in points)
    return dfax.projectors.gaussian(jax.random.key(3))(error, points)

  loss_fn = lambda p: _ce(model.apply(p, tokens[:, :-1]), tokens[:, 1:])
  g = jax.jit(dfax.dfa_grad(loss_fn, projector=projector, feedback=Block))(params)
  # The embedding output enters Block_0; per-token projection (batch x tokens dims).
  assert seen == [("Block_0/in", (2, 4, 16)), ("Block_1/in", (2, 4, 16)),
                  ("Block_2/in", (2, 4, 16))]
  bp = jax.grad(loss_fn)(params)
  # The last block and the head are the tail: trained with the true error.
  for name in ("Block_2", "Dense_0", "LayerNorm_0"):
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
                 g["params"][name], bp["params"][name])
  assert not np.allclose(g["params"]["Block_0"]["Dense_0"]["kernel"],
                         bp["params"]["Block_0"]["Dense_0"]["kernel"])


def test_one_value_into_several_modules_is_one_point():
  class QKV(nn.Module):
    @nn.compact
    def __call__(self, x):
      x = nn.tanh(nn.Dense(8)(x))
      q, k, v = nn.Dense(8)(x), nn.Dense(8)(x), nn.Dense(8)(x)
      return nn.Dense(3)(q * k + v)

  model = QKV()
  x = jnp.ones((2, 4))
  params = model.init(jax.random.key(0), x)
  paths = []

  def projector(error, points):
    paths.extend(p.path for p in points)
    return [jnp.zeros(p.shape) for p in points]

  dfax.dfa_grad(lambda p: model.apply(p, x).sum(), projector=projector)(params)
  assert paths == ["Dense_1/in", "Dense_4/in"]


def test_feedback_point_marker_and_predicate_selection():
  class Marked(nn.Module):
    @nn.compact
    def __call__(self, x):
      x = nn.tanh(nn.Dense(8)(x))
      x = dfax.FeedbackPoint(name="fb")(x)
      x = nn.tanh(nn.Dense(8)(x))
      return nn.Dense(3)(x)

  model = Marked()
  x = jnp.ones((2, 4))
  params = model.init(jax.random.key(0), x)
  paths = []

  def projector(error, points):
    paths.append([p.path for p in points])
    return [jnp.zeros(p.shape) for p in points]

  loss = lambda p: model.apply(p, x).sum()
  dfax.dfa_grad(loss, projector=projector, feedback=dfax.FeedbackPoint)(params)
  dfax.dfa_grad(loss, projector=projector, feedback=dfax.by_name("Dense_2"))(params)
  dfax.dfa_grad(loss, projector=projector)(params)
  assert paths == [["fb/in"], ["Dense_2/in"], ["fb/in", "Dense_2/in"]]


def test_vmap_gives_per_example_dfa_grads():
  model = MLP()
  x, y = _data()
  params = model.init(jax.random.key(1), x)
  loss = lambda p, x, y: _ce(model.apply(p, x[None]), y[None])
  per_example = jax.vmap(dfax.dfa_grad(loss), in_axes=(None, 0, 0))(params, x, y)
  for i in (0, 5):
    one = dfax.dfa_grad(loss)(params, x[i], y[i])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a[i], b, rtol=1e-5, atol=1e-7),
                 per_example, one)
  mean = jax.tree.map(lambda a: a.mean(0), per_example)
  full = dfax.dfa_grad(lambda p: _ce(model.apply(p, x), y))(params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), mean, full)
