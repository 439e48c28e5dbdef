"""The selection API (by_name, after), pytree outputs, and the misuse that must fail clearly."""

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dfax
from dfax.testing import assert_trees_close, oracle_projector

X = jax.random.normal(jax.random.key(0), (4, 6))


class Block(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.tanh(nn.Dense(8, name="fc")(nn.tanh(nn.Dense(8, name="inner")(x))))


class Net(nn.Module):
  @nn.compact
  def __call__(self, x):
    h = nn.Dense(8, name="embed")(x)
    for i in range(3):
      h = Block(name=f"block_{i}")(h)
    return nn.Dense(3, name="head")(h)


def _params(model=Net(), x=X):
  return model.init(jax.random.key(1), x)


def _loss(model=Net()):
  return lambda p: jnp.mean(model.apply(p, X) ** 2)


def _paths(feedback, model=Net(), loss=None, params=None):
  seen = []

  def projector(error, points):
    seen.extend(p.path for p in points)
    return [jnp.zeros(p.shape, p.dtype) for p in points]

  params = _params(model) if params is None else params
  dfax.dfa_grad(loss or _loss(model), projector=projector, feedback=feedback)(params)
  return seen


def test_by_name_star_stays_within_one_level_double_star_crosses():
  assert _paths(dfax.by_name("block_*")) == ["block_0/in", "block_1/in", "block_2/in"]
  assert _paths(dfax.by_name("**/fc")) == ["block_0/fc/in", "block_1/fc/in", "block_2/fc/in"]
  assert _paths(dfax.by_name("block_?/inner")) == [
      "block_0/inner/in", "block_1/inner/in", "block_2/inner/in"]


def test_after_cuts_outputs_and_the_head_alone_is_exact():
  assert _paths(dfax.after(Block)) == ["block_0/out", "block_1/out", "block_2/out"]
  params = _params()
  grads = dfax.dfa_grad(_loss(), feedback=dfax.after(Block))(params)
  exact = jax.grad(_loss())(params)
  assert_trees_close(grads["params"]["head"], exact["params"]["head"])
  assert not np.allclose(grads["params"]["block_2"]["fc"]["kernel"],
                         exact["params"]["block_2"]["fc"]["kernel"])
  # The embedding trains through block 0's backward from block 0's feedback.
  assert np.abs(grads["params"]["embed"]["kernel"]).sum() > 0


def test_after_and_in_front_mix_and_the_oracle_reproduces_backprop():
  feedback = (dfax.after(Block), dfax.by_name("**/inner"))
  # A block's output is the next block's (and its inner layer's) input: one point.
  assert _paths(feedback) == ["block_0/inner/in", "block_0/out", "block_1/out", "block_2/out"]
  make = lambda p: dfax.dfa_grad(_loss(), projector=p, feedback=feedback)
  params = _params()
  assert_trees_close(make(oracle_projector(make, params))(params), jax.grad(_loss())(params))


@flax.struct.dataclass
class Out:
  logits: jax.Array
  hidden: jax.Array


class PytreeNet(nn.Module):
  kind: str

  @nn.compact
  def __call__(self, x):
    h = nn.tanh(nn.Dense(8)(x))
    logits = nn.Dense(3)(h)
    ids = jnp.argmax(logits, -1)
    if self.kind == "dict":
      return {"ids": ids, "logits": logits, "hidden": h}
    if self.kind == "tuple":
      return logits, h
    return Out(logits=logits, hidden=h)


@pytest.mark.parametrize("kind,output", [("dict", None), ("dict", "logits"), ("tuple", None),
                                         ("tuple", lambda o: o[0]), ("struct", "logits")])
def test_pytree_outputs_take_the_error_at_the_logits(kind, output):
  model = PytreeNet(kind)
  params = _params(model)
  get = (lambda o: o["logits"]) if kind == "dict" else (lambda o: o[0] if kind == "tuple"
                                                        else o.logits)
  loss = lambda p: jnp.mean(get(model.apply(p, X)) ** 2)
  grads = jax.jit(dfax.dfa_grad(loss, output=output))(params)
  exact = jax.grad(loss)(params)
  assert_trees_close(grads["params"]["Dense_1"], exact["params"]["Dense_1"])
  assert not np.allclose(grads["params"]["Dense_0"]["kernel"], exact["params"]["Dense_0"]["kernel"])


def test_output_selector_errors_name_the_fix():
  model = PytreeNet("dict")
  params = _params(model)
  loss = lambda p: jnp.mean(model.apply(p, X)["logits"] ** 2)
  with pytest.raises(KeyError, match="no such key or attribute"):
    dfax.dfa_grad(loss, output="scores")(params)
  with pytest.raises(TypeError, match="not a floating-point array"):
    dfax.dfa_grad(loss, output="ids")(params)
  with pytest.raises(TypeError, match="did not return one of the model output's leaves"):
    dfax.dfa_grad(loss, output=lambda o: o["logits"] * 2)(params)
  with pytest.raises(TypeError, match="output= must be"):
    dfax.dfa_grad(loss, output=3)


class Decoder(nn.Module):
  @nn.compact
  def __call__(self, ids):
    h = nn.Embed(10, 8)(ids)
    return nn.Dense(10)(nn.tanh(nn.Dense(8)(h)))


class LM(nn.Module):
  @nn.compact
  def __call__(self, ids):
    return Decoder(name="decoder")(ids)


def test_selections_that_make_no_point_are_refused_not_silent_backprop():
  ids = jnp.arange(12).reshape(3, 4) % 10
  model = LM()
  params = model.init(jax.random.key(0), ids)
  loss = lambda p: jnp.mean(model.apply(p, ids) ** 2)
  with pytest.raises(ValueError, match=r"made no feedback point.*decoder/Embed_0 \(Embed\): "
                     "it has no floating-point"):
    dfax.dfa_grad(loss, feedback=nn.Embed)(params)
  with pytest.raises(ValueError, match=r"made no feedback point.*decoder \(Decoder\)"):
    dfax.dfa_grad(loss, feedback=Decoder)(params)
  # One entry of an explicit tuple that makes no point is named, even when others do.
  with pytest.raises(ValueError, match=r"entry .*Embed .*made no feedback point"):
    dfax.dfa_grad(loss, feedback=(nn.Dense, nn.Embed))(params)
  # dfax.after(nn.Embed) does make a point: the embedding output depends on the table.
  assert _paths(dfax.after(nn.Embed), model, loss, params) == ["decoder/Embed_0/out"]


def test_first_layer_on_raw_input_is_fine_under_the_default_selection():
  assert _paths(None) == ["block_0/inner/in", "block_0/fc/in", "block_1/inner/in",
                          "block_1/fc/in", "block_2/inner/in", "block_2/fc/in", "head/in"]


def test_misuse_gets_errors_that_name_the_fix():
  params, loss = _params(), _loss()
  with pytest.raises(TypeError, match="pass has_aux=True"):
    dfax.dfa_grad(lambda p: (loss(p), 1.0))(params)
  with pytest.raises(TypeError, match=r"argnums must be an int.*write argnums=0"):
    dfax.dfa_grad(loss, argnums="0")
  with pytest.raises(TypeError, match=r"projector factory.*gaussian\(jax.random.key\(0\)\)"):
    dfax.dfa_grad(loss, projector=dfax.projectors.gaussian)
  with pytest.raises(TypeError, match=r"projector factory.*zeros\(\)"):
    dfax.dfa_grad(loss, projector=dfax.projectors.zeros)
  with pytest.raises(TypeError, match=r"module instance.*feedback=Block"):
    dfax.dfa_grad(loss, feedback=Block())
  with pytest.raises(NotImplementedError, match="holomorphic"):
    dfax.dfa_grad(loss, holomorphic=True)
  for bad in (lambda e, pts: [jnp.zeros(p.shape, jnp.complex64) for p in pts],
              lambda e, pts: [jnp.zeros(p.shape, jnp.int32) for p in pts],
              lambda e, pts: [jnp.zeros(p.shape, bool) for p in pts]):
    with pytest.raises(TypeError, match="real floating-point"):
      dfax.dfa_grad(loss, projector=bad)(params)


def test_allow_int_is_passed_to_jax_grad():
  params = _params()
  loss = lambda p, n: _loss()(p) * n
  grads, dn = dfax.dfa_grad(loss, argnums=(0, 1), allow_int=True)(params, 2)
  assert dn.dtype == jax.dtypes.float0
  with pytest.raises(TypeError, match="allow_int"):
    dfax.dfa_grad(loss, argnums=(0, 1))(params, 2)
