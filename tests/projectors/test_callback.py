"""A host (numpy) projector behind jax.pure_callback gives the same DFA gradients."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import dfax


class MLP(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = nn.tanh(nn.Dense(8)(x))
    x = nn.tanh(nn.Dense(8)(x))
    return nn.Dense(4)(x)


def test_host_projector_matches_jax_projector_under_jit():
  rng = np.random.default_rng(0)
  mats = {"Dense_1/in": rng.normal(size=(4, 8)), "Dense_2/in": rng.normal(size=(4, 8))}
  calls = []

  def on_host(error, points):
    calls.append(type(error))
    return [error @ mats[p.path] for p in points]

  in_jax = lambda e, points: [e @ jnp.asarray(mats[p.path], e.dtype) for p in points]
  model = MLP()
  x = jax.random.normal(jax.random.key(0), (5, 3))
  params = model.init(jax.random.key(1), x)
  loss = lambda p: (model.apply(p, x) ** 2).mean()
  got = jax.jit(dfax.dfa_grad(loss, projector=dfax.projectors.host_projector(on_host)))(params)
  want = dfax.dfa_grad(loss, projector=in_jax)(params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), got, want)
  assert calls and calls[0] is np.ndarray
