"""Layer-parallel DFA backward of a cut scanned stack equals the reverse scan."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dfax.parallel.layer_parallel import LayerStack, layer_parallel_grads, reverse_scan_grads


def _block(p, h):
  return h + jnp.tanh(h @ p["w1"] + p["b"]) @ p["w2"]


def _setup(layers=5):
  k = jax.random.split(jax.random.key(0), 5)
  params = {"w1": jax.random.normal(k[0], (layers, 8, 12)) / 3,
            "b": jax.random.normal(k[1], (layers, 12)),
            "w2": jax.random.normal(k[2], (layers, 12, 8)) / 3}
  x = jax.random.normal(k[3], (6, 8))
  cots = jax.random.normal(k[4], (layers, 6, 8))
  return params, x, cots


@pytest.mark.slow
def test_layer_parallel_equals_reverse_scan(mode="vmap"):  # "scan": tests/parallel/test_pipeline.py
  params, x, cots = _setup()
  ref_grads, ref_dx = jax.jit(lambda p, h, c: reverse_scan_grads(_block, p, h, c))(params, x, cots)
  ys, grads, dx = jax.jit(lambda p, h: layer_parallel_grads(_block, p, h, lambda ys: cots,
                                                            mode=mode))(params, x)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               (grads, dx), (ref_grads, ref_dx))
  plain = jax.jit(lambda p, h: jax.lax.scan(lambda h, q: (_block(q, h),) * 2, h, p)[1])
  np.testing.assert_allclose(ys, plain(params, x), rtol=1e-5, atol=1e-6)  # the plain stack's
  # cut: block l's gradient depends only on its own cotangent
  _, g2, _ = jax.jit(lambda p, h: layer_parallel_grads(
      _block, p, h, lambda ys: cots.at[3].set(0.0), mode=mode))(params, x)
  np.testing.assert_allclose(g2["w1"][2], grads["w1"][2], rtol=1e-5, atol=1e-6)
  assert float(jnp.abs(g2["w1"][3]).max()) == 0.0


def test_one_layer_and_bad_mode():
  params, x, cots = _setup(layers=1)
  stack = LayerStack(_block)

  @jax.jit
  def both(p, h, c):
    _, stored = stack.forward(p, h)
    return stack.backward(p, stored, c), reverse_scan_grads(_block, p, h, c)

  (grads, dx), ref = both(params, x, cots)
  _, stored = jax.eval_shape(stack.forward, params, x)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               (grads, dx), ref)
  with pytest.raises(ValueError, match="mode must be one of"):
    stack.backward(params, stored, cots, mode="parallel")
