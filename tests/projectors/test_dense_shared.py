"""Built-in dense and shared projectors: keyed, tiled, per-example, never stored."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dfax
from dfax.projectors.dense import tiled_matmul

P = dfax.PointSpec


def test_same_key_same_path_same_matrix_different_path_different():
  e = jax.random.normal(jax.random.key(0), (3, 10))
  proj = dfax.projectors.gaussian(jax.random.key(1))
  a1, b1 = proj(e, [P("a/in", (3, 20), jnp.float32), P("b/in", (3, 20), jnp.float32)])
  (b2,) = proj(e, [P("b/in", (3, 20), jnp.float32)])
  np.testing.assert_array_equal(b1, b2)  # independent of the other points
  assert not np.allclose(a1, b1)


def test_matrix_is_identical_in_a_fresh_process():
  code = ("import jax, jax.numpy as jnp, numpy as np, dfax;"
          "e = jnp.arange(20.).reshape(2, 10) / 10;"
          "(c,) = dfax.projectors.gaussian(jax.random.key(5))(e, "
          "[dfax.PointSpec('blk/in', (2, 6), jnp.float32)]);"
          "print(repr(np.asarray(c).tolist()))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       check=True).stdout
  e = jnp.arange(20.).reshape(2, 10) / 10
  (c,) = dfax.projectors.gaussian(jax.random.key(5))(e, [P("blk/in", (2, 6), jnp.float32)])
  np.testing.assert_array_equal(np.array(eval(out)), np.asarray(c))


def test_tiled_equals_one_shot_matrix():
  e = jax.random.normal(jax.random.key(0), (4, 7))
  key = jax.random.key(3)
  tiled = tiled_matmul(e, key, 10, distribution="gaussian", scale=1.0, tile=4)
  tiles = [jax.random.normal(jax.random.fold_in(key, j), (7, 4)) for j in range(3)]
  full = jnp.concatenate(tiles, axis=1)[:, :10]
  np.testing.assert_allclose(tiled, e @ full, rtol=1e-5, atol=1e-6)


def test_tiled_projection_never_materialises_the_full_matrix():
  # 64 x 262144 float32 would be 64 MiB; with 4096-column tiles the largest
  # intermediate is the output itself, far below one full matrix.
  e = jnp.ones((1, 64))
  spec = P("wide/in", (1, 262144), jnp.float32)
  proj = dfax.projectors.gaussian(jax.random.key(0), tile=4096)
  compiled = jax.jit(lambda e: proj(e, [spec])[0]).lower(e).compile()
  temp = compiled.memory_analysis().temp_size_in_bytes
  assert temp < 64 * 262144 * 4 / 4, temp


def test_per_example_independence_and_linearity():
  e = jax.random.normal(jax.random.key(0), (6, 10))
  spec = P("x/in", (6, 5, 3), jnp.float32)
  for proj in (dfax.projectors.gaussian(jax.random.key(1)),
               dfax.projectors.uniform(jax.random.key(1)),
               dfax.projectors.shared(jax.random.key(1))):
    (full,) = proj(e, [spec])
    (first,) = proj(e[:2], [P("x/in", (2, 5, 3), jnp.float32)])
    np.testing.assert_allclose(full[:2], first, rtol=1e-5, atol=1e-6)
    (double,) = proj(2 * e, [spec])
    np.testing.assert_allclose(double, 2 * full, rtol=1e-5, atol=1e-6)


def test_token_dims_are_projected_per_token():
  e = jax.random.normal(jax.random.key(0), (2, 5, 10))  # batch x tokens x vocab
  (c,) = dfax.projectors.gaussian(jax.random.key(1))(e, [P("b/in", (2, 5, 8), jnp.float32)])
  (c0,) = dfax.projectors.gaussian(jax.random.key(1))(e[:1, 2:3], [P("b/in", (1, 1, 8), jnp.float32)])
  np.testing.assert_allclose(c[0, 2], c0[0, 0], rtol=1e-5, atol=1e-6)


def test_scales_and_distributions():
  e = jnp.eye(50)  # rows of the projection are the matrix rows
  (g,) = dfax.projectors.gaussian(jax.random.key(0))(e, [P("p", (50, 2000), jnp.float32)])
  np.testing.assert_allclose(float(g.std()), 1 / np.sqrt(50), rtol=0.05)
  (u,) = dfax.projectors.uniform(jax.random.key(0))(e, [P("p", (50, 400), jnp.float32)])
  assert float(jnp.abs(u).max()) <= 1 / np.sqrt(400) + 1e-7
  np.testing.assert_allclose(float(jnp.abs(u).max()), 1 / np.sqrt(400), rtol=0.05)
  with pytest.raises(ValueError, match="distribution"):
    dfax.projectors.dense(jax.random.key(0), distribution="cauchy")
  with pytest.raises(ValueError, match="scale"):
    dfax.projectors.dense(jax.random.key(0), scale="huge")


def test_shared_slices_one_matrix_and_reuse_gives_prefixes():
  e = jax.random.normal(jax.random.key(0), (3, 10))
  specs = [P("a", (3, 4), jnp.float32), P("b", (2, 3, 6), jnp.float32, stack_ndim=1)]
  a, b = dfax.projectors.shared(jax.random.key(2), scale=1.0)(e, specs)
  full = tiled_matmul(e, jax.random.key(2), 4 + 12, distribution="gaussian", scale=1.0,
                      tile=4096)
  np.testing.assert_allclose(a, full[:, :4], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(b[0], full[:, 4:10], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(b[1], full[:, 10:16], rtol=1e-5, atol=1e-6)
  specs = [P("a", (3, 4), jnp.float32), P("b", (3, 6), jnp.float32)]
  a, b = dfax.projectors.shared(jax.random.key(2), reuse=True)(e, specs)
  np.testing.assert_allclose(a, b[:, :4], rtol=1e-6)  # TinyDFA: same signal prefix


def test_shared_tied_over_layers_and_tokens_gives_every_stream_copy_one_signal():
  e = jax.random.normal(jax.random.key(0), (3, 10))  # per-image error
  specs = [P("blocks/ln", (4, 3, 16, 8), jnp.float32, stack_ndim=1),  # scanned, per token
           P("ln_final", (3, 8), jnp.float32), P("narrow", (3, 16, 5), jnp.float32)]
  proj = dfax.projectors.shared(jax.random.key(2), reuse=True, tie_copies=True, feature_ndim=1)
  stream, final, narrow = proj(e, specs)
  assert stream.shape == (4, 3, 16, 8) and narrow.shape == (3, 16, 5)
  full = tiled_matmul(e, jax.random.key(2), 8, distribution="gaussian",
                      scale=1 / np.sqrt(10), tile=4096)
  np.testing.assert_allclose(final, full, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(stream, jnp.broadcast_to(full[None, :, None], stream.shape),
                             rtol=1e-5, atol=1e-6)  # every layer and token: the same signal
  np.testing.assert_allclose(narrow, jnp.broadcast_to(full[:, None, :5], narrow.shape),
                             rtol=1e-5, atol=1e-6)  # a narrower point takes a prefix
  untied = dfax.projectors.shared(jax.random.key(2), feature_ndim=1)(e, specs[:1])[0]
  assert not np.allclose(untied[0], untied[1])  # layers take their own slices when untied
  np.testing.assert_array_equal(untied[:, :, 0], untied[:, :, 7])  # tokens still shared
  with pytest.raises(ValueError, match="feature_ndim"):
    dfax.projectors.shared(jax.random.key(0), feature_ndim=0)



def test_zeros_control_trains_only_the_tail():
  import flax.linen as nn

  class Net(nn.Module):
    @nn.compact
    def __call__(self, x):
      x = nn.tanh(nn.Dense(8, name="hidden")(x))
      return nn.Dense(3, name="out")(x)

  net = Net()
  x = jax.random.normal(jax.random.key(0), (4, 5))
  params = net.init(jax.random.key(1), x)
  loss = lambda p: (net.apply(p, x) ** 2).sum()
  g = dfax.dfa_grad(loss, projector=dfax.projectors.zeros())(params)
  bp = jax.grad(loss)(params)
  assert all(not np.any(a) for a in jax.tree.leaves(g["params"]["hidden"]))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6),
               g["params"]["out"], bp["params"]["out"])
  with pytest.raises(ValueError, match="leading dims"):
    dfax.projectors.zeros()(jnp.ones((2, 3)), [P("p", (5, 4), jnp.float32)])


def test_identity_control_sends_the_error_itself():
  e = jax.random.normal(jax.random.key(0), (2, 5, 8))  # batch x tokens x d_model
  spec = P("blocks/in", (3, 2, 5, 8), jnp.float32, stack_ndim=1)
  (c,) = dfax.projectors.identity()(e, [spec])
  assert c.shape == spec.shape
  for layer in range(3):
    np.testing.assert_array_equal(c[layer], e)
  with pytest.raises(ValueError, match="equal widths"):
    dfax.projectors.identity()(e, [P("fc/in", (2, 5, 16), jnp.float32)])
