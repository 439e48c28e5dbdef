"""Every Flax lifted transform makes the points its body would make unwrapped, or raises.

The model is a 3-layer MLP whose hidden nn.Dense layers are wrapped, one at a
time, in each lifted transform Flax offers; the points and the DFA gradient
must equal those of the unwrapped MLP. A lifted *method* (a decorator) cannot
be routed, so points inside one raise an error naming the transform.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dfax

WIDTH, OUT = 16, 4


def _plain(cls):
  return cls


def _vmap_free(cls):  # nn.vmap with no mapped axis changes no value: a pure wrapper
  return nn.vmap(cls, variable_axes={"params": None}, split_rngs={"params": False},
                 in_axes=0, out_axes=0)


WRAPPERS = {
    "jit": nn.jit,
    "fold_rngs": nn.fold_rngs,
    "remat": nn.remat,
    "vmap": _vmap_free,
}


class MLP(nn.Module):
  wrap: str = "plain"

  @nn.compact
  def __call__(self, x):
    dense = WRAPPERS.get(self.wrap, _plain)(nn.Dense)
    x = jnp.tanh(dense(WIDTH, name="fc0")(x))
    x = jnp.tanh(dense(WIDTH, name="fc1")(x))
    return nn.Dense(OUT, name="head")(x)


JitDense = nn.jit(nn.Dense)  # one class at module level: nn.jit caches its traced body


class ModuleLevelJit(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = jnp.tanh(JitDense(WIDTH, name="fc0")(x))
    x = jnp.tanh(JitDense(WIDTH, name="fc1")(x))
    return nn.Dense(OUT, name="head")(x)


def _projector(seen):
  def projector(error, points):
    seen.append(tuple(p.path for p in points))
    return [error @ jax.random.normal(dfax.projectors.path_key(jax.random.key(7), p.path),
                                      (OUT, p.shape[-1])) for p in points]
  return projector


def _grads(model, params, x, jit=False):
  seen = []
  grad_fn = dfax.dfa_grad(lambda p: jnp.mean(model.apply(p, x) ** 2), feedback=nn.Dense,
                          projector=_projector(seen))
  grads = (jax.jit(grad_fn) if jit else grad_fn)(params)
  return grads, seen[-1]


def _assert_same(a, b):
  with jax.default_matmul_precision("highest"):
    jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6), a, b)


@pytest.fixture(scope="module")
def data():
  x = jax.random.normal(jax.random.key(0), (8, 6))
  return x, MLP().init(jax.random.key(1), x)


@pytest.mark.parametrize("wrap", sorted(WRAPPERS))
@pytest.mark.parametrize("jit", [False, True])
def test_lifted_dense_makes_the_points_and_grads_of_the_plain_dense(data, wrap, jit):
  x, params = data
  with jax.default_matmul_precision("highest"):
    plain, plain_points = _grads(MLP(), params, x, jit)
    wrapped, wrapped_points = _grads(MLP(wrap=wrap), params, x, jit)
  assert plain_points == ("fc1/in", "head/in")  # the raw input is no point
  assert wrapped_points == plain_points
  _assert_same(wrapped, plain)


def test_module_level_nn_jit_reruns_its_body_after_a_plain_apply(data):
  # A plain apply traces JitDense's body first, without dfax; a DFA step with
  # the same shapes must still make both points, not reuse that cached body.
  x, params = data
  model = ModuleLevelJit()
  plain_out = model.apply(params, x)
  with jax.default_matmul_precision("highest"):
    grads, points = _grads(model, params, x)
    reference, _ = _grads(MLP(), params, x)
  assert points == ("fc1/in", "head/in")
  _assert_same(grads, reference)
  # ...and the cached body is still the plain one afterwards.
  np.testing.assert_array_equal(model.apply(params, x), plain_out)


def test_outputs_of_lifted_modules_under_dfax_after(data):
  x, params = data
  seen = []
  grad_fn = dfax.dfa_grad(lambda p: jnp.mean(MLP(wrap="jit").apply(p, x) ** 2),
                          feedback=dfax.after(nn.Dense), projector=_projector(seen))
  grad_fn(params)
  assert seen[-1][:2] == ("fc0/out", "fc1/out")


class DecoratedBlock(nn.Module):
  @nn.jit
  @nn.compact
  def __call__(self, x):
    return jnp.tanh(nn.Dense(WIDTH, name="fc")(x))


class RematMethodBlock(nn.Module):
  @nn.remat
  @nn.compact
  def __call__(self, x):
    return jnp.tanh(nn.Dense(WIDTH, name="fc")(x))


class WithDecorated(nn.Module):
  block: type = DecoratedBlock

  @nn.compact
  def __call__(self, x):
    x = nn.Dense(WIDTH, name="embed")(x)
    return nn.Dense(OUT, name="head")(self.block(name="block")(x))


@pytest.mark.parametrize("block,transform", [(DecoratedBlock, "nn.jit"),
                                             (RematMethodBlock, "nn.checkpoint")])
def test_points_inside_a_lifted_method_raise_naming_the_transform(block, transform):
  x = jax.random.normal(jax.random.key(0), (8, 6))
  model = WithDecorated(block=block)
  params = model.init(jax.random.key(1), x)
  loss = lambda p: jnp.mean(model.apply(p, x) ** 2)
  # Flax intercepts a lifted method only inside its body, so the method's own
  # inputs are inside the transform too.
  for feedback in (nn.Dense, block, dfax.after(block)):
    with pytest.raises(NotImplementedError, match=transform.replace(".", r"\.")):
      dfax.dfa_grad(loss, feedback=feedback)(params)
  # Points outside the lifted method are fine.
  grads = dfax.dfa_grad(loss, feedback=dfax.by_name("head"))(params)
  assert set(grads["params"]) == {"embed", "block", "head"}
