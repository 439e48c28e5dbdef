"""Bad input gets a clear error that names the fix."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

import dfax


class MLP(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Dense(3)(nn.tanh(nn.Dense(8)(x)))


class TupleOut(nn.Module):
  @nn.compact
  def __call__(self, x):
    h = nn.tanh(nn.Dense(8)(x))
    return nn.Dense(3)(h), h


X = jnp.ones((2, 4))


def _params(model=MLP()):
  return model.init(jax.random.key(0), X)


def test_no_points_found_names_seen_modules_and_how_to_select():
  class Norm(nn.Module):
    @nn.compact
    def __call__(self, x):
      return nn.LayerNorm()(x)

  model = Norm()
  params = model.init(jax.random.key(0), X)
  with pytest.raises(ValueError, match=r"no feedback points found.*LayerNorm x1.*feedback="):
    dfax.dfa_grad(lambda p: model.apply(p, X).sum())(params)


def test_no_flax_module_called():
  with pytest.raises(ValueError, match="called no Flax linen module"):
    dfax.dfa_grad(lambda w: (w ** 2).sum())(jnp.ones(3))


def test_loss_not_scalar():
  model = MLP()
  with pytest.raises(TypeError, match=r"must return a scalar.*mean\(\)"):
    dfax.dfa_grad(lambda p: model.apply(p, X))(_params())


def test_model_output_without_a_floating_leaf():
  class IdsOut(nn.Module):
    @nn.compact
    def __call__(self, x):
      h = nn.Dense(3)(nn.tanh(nn.Dense(8)(x)))
      return {"ids": jnp.argmax(h, -1)}

  model = IdsOut()
  params = model.init(jax.random.key(0), X)
  with pytest.raises(TypeError, match="no floating-point array.*output="):
    dfax.dfa_grad(lambda p: model.apply(p, X)["ids"].sum() * 1.0)(params)


def test_projector_wrong_count_and_shape():
  model = MLP()
  loss = lambda p: model.apply(p, X).sum()
  with pytest.raises(ValueError, match=r"returned 0 cotangents for 1 feedback points"):
    dfax.dfa_grad(loss, projector=lambda e, pts: [])(_params())
  with pytest.raises(ValueError, match=r"returned shape \(2, 7\).*has shape \(2, 8\)"):
    dfax.dfa_grad(loss, projector=lambda e, pts: [jnp.zeros((2, 7))])(_params())
  with pytest.raises(TypeError, match="list or tuple"):
    dfax.dfa_grad(loss, projector=lambda e, pts: jnp.zeros((2, 8)))(_params())


def test_bad_feedback_and_argnums():
  with pytest.raises(TypeError, match="Module classes"):
    dfax.dfa_grad(lambda p: p, feedback=(int,))
  with pytest.raises(TypeError, match="feedback= must be"):
    dfax.dfa_grad(lambda p: p, feedback=3)
  model = MLP()
  with pytest.raises(ValueError, match="argnums=2"):
    dfax.dfa_grad(lambda p: model.apply(p, X).sum(), argnums=2)(_params())


def test_has_aux_needs_a_pair():
  model = MLP()
  with pytest.raises(TypeError, match=r"pair \(loss, aux\)"):
    dfax.dfa_grad(lambda p: model.apply(p, X).sum(), has_aux=True)(_params())


def test_error_dims_must_prefix_point_dims():
  class Pooled(nn.Module):
    @nn.compact
    def __call__(self, x):  # x: (batch, tokens, d); output per token
      h = nn.tanh(nn.Dense(8)(x)).mean(axis=1)  # pooled over tokens
      h = nn.Dense(8)(h)
      return jnp.broadcast_to(h[:, None, :], x.shape[:2] + (8,))

  x = jnp.ones((2, 3, 4))
  model = Pooled()
  params = model.init(jax.random.key(0), x)
  with pytest.raises(ValueError, match="does not start with the output error's leading dims"):
    dfax.dfa_grad(lambda p: model.apply(p, x).sum())(params)
