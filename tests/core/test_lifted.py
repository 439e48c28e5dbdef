"""nn.scan and nn.remat: points inside lifted bodies come out stacked, per layer."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dfax

LAYERS, WIDTH = 3, 12


class Block(nn.Module):
  @nn.compact
  def __call__(self, h, _):
    h = nn.tanh(nn.Dense(WIDTH, name="fc1")(h))
    return nn.tanh(nn.Dense(WIDTH, name="fc2")(h)), None


class Unrolled(nn.Module):
  @nn.compact
  def __call__(self, x):
    h = nn.Dense(WIDTH, name="embed")(x)
    for i in range(LAYERS):
      h, _ = Block(name=f"b{i}")(h, None)
    return nn.Dense(5, name="head")(h)


class Scanned(nn.Module):
  remat: bool = False

  @nn.compact
  def __call__(self, x):
    h = nn.Dense(WIDTH, name="embed")(x)
    block = nn.remat(Block) if self.remat else Block
    stack = nn.scan(block, variable_axes={"params": 0}, split_rngs={"params": True},
                    length=LAYERS)
    h, _ = stack(name="blocks")(h, None)
    return nn.Dense(5, name="head")(h)


def _unrolled_params(scanned):
  p = dict(scanned["params"])
  blocks = p.pop("blocks")
  for i in range(LAYERS):
    p[f"b{i}"] = jax.tree.map(lambda a: a[i], blocks)
  return {"params": p}


def _matrices():
  keys = jax.random.split(jax.random.key(9), 2 * LAYERS)
  return [jax.random.normal(k, (5, WIDTH)) for k in keys]


def _scanned_projector(mats, paths_seen):
  """Copy i of a stacked point uses mats[i] (block inputs) or mats[L+i] (fc2 inputs)."""
  def projector(error, points):
    paths_seen.append([(p.path, p.shape, p.stack_ndim) for p in points])
    out = []
    for p in points:
      offset = 0 if p.path == "blocks/in" else LAYERS
      out.append(jnp.stack([error @ mats[offset + i] for i in range(p.num_copies)]))
    return out
  return projector


def _unrolled_projector(mats):
  def projector(error, points):
    out = []
    for p in points:
      block, kind = p.path.split("/")[0], p.path.split("/")[1]
      i = int(block[1:])
      out.append(error @ mats[i if kind == "in" else LAYERS + i])
    return out
  return projector


def _loss(model, x):
  return lambda p: (model.apply(p, x) ** 2).mean()


@pytest.mark.parametrize("remat", [False, True])
def test_scan_equals_unrolled_with_one_point_per_block(remat):
  x = jax.random.normal(jax.random.key(0), (4, 7))
  scanned = Scanned(remat=remat)
  params = scanned.init(jax.random.key(1), x)
  mats, seen = _matrices(), []
  g_scan = jax.jit(dfax.dfa_grad(_loss(scanned, x), feedback=Block,
                                 projector=_scanned_projector(mats, seen)))(params)
  assert seen == [[("blocks/in", (LAYERS, 4, WIDTH), 1)]]
  unrolled = Unrolled()
  g_unr = dfax.dfa_grad(_loss(unrolled, x), feedback=Block,
                        projector=_unrolled_projector(mats))(_unrolled_params(params))
  want = {"params": {k: v for k, v in g_unr["params"].items() if not k.startswith("b")}}
  want["params"]["blocks"] = jax.tree.map(
      lambda *a: jnp.stack(a), *[g_unr["params"][f"b{i}"] for i in range(LAYERS)])
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
               g_scan, want)


def test_points_inside_scanned_body_are_stacked_per_layer():
  x = jax.random.normal(jax.random.key(0), (4, 7))
  scanned = Scanned()
  params = scanned.init(jax.random.key(1), x)
  mats, seen = _matrices(), []
  select = dfax.by_name("blocks/fc2")
  g_scan = dfax.dfa_grad(_loss(scanned, x), feedback=select,
                         projector=_scanned_projector(mats, seen))(params)
  assert seen == [[("blocks/fc2/in", (LAYERS, 4, WIDTH), 1)]]
  unrolled = Unrolled()
  g_unr = dfax.dfa_grad(_loss(unrolled, x), feedback=dfax.by_name("b*/fc2"),
                        projector=_unrolled_projector(mats))(_unrolled_params(params))
  for i in range(LAYERS):
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a[i], b, rtol=1e-5, atol=1e-7),
                 g_scan["params"]["blocks"], g_unr["params"][f"b{i}"])


@pytest.mark.slow
def test_builtin_projectors_give_each_stacked_copy_its_own_matrix():
  x = jax.random.normal(jax.random.key(0), (4, 7))
  scanned = Scanned()
  params = scanned.init(jax.random.key(1), x)
  error = jax.random.normal(jax.random.key(2), (4, 5))
  spec = dfax.PointSpec("blocks/in", (LAYERS, 4, WIDTH), jnp.float32, stack_ndim=1)
  for proj in (dfax.projectors.gaussian(jax.random.key(0)),
               dfax.projectors.shared(jax.random.key(0))):
    (c,) = proj(error, [spec])
    assert c.shape == (LAYERS, 4, WIDTH)
    assert not np.allclose(c[0], c[1])
  g = dfax.dfa_grad(_loss(scanned, x), feedback=Block)(params)
  assert all(bool(jnp.all(jnp.isfinite(a))) for a in jax.tree.leaves(g))


class RematUnrolled(nn.Module):
  @nn.compact
  def __call__(self, x):
    h = nn.Dense(WIDTH, name="embed")(x)
    for i in range(LAYERS):
      h, _ = nn.remat(Block)(name=f"b{i}")(h, None)
    return nn.Dense(5, name="head")(h)


def test_remat_blocks_give_the_same_grads_as_plain_blocks():
  x = jax.random.normal(jax.random.key(0), (4, 7))
  params = Unrolled().init(jax.random.key(1), x)
  for select in (Block, nn.Dense):
    proj = lambda e, pts: [e @ jax.random.normal(dfax.projectors.path_key(jax.random.key(0), p.path),
                                                 (5, p.shape[-1])) for p in pts]
    plain = dfax.dfa_grad(_loss(Unrolled(), x), feedback=select, projector=proj)(params)
    remat = jax.jit(dfax.dfa_grad(_loss(RematUnrolled(), x), feedback=select,
                                  projector=proj))(params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
                 plain, remat)


class Member(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Dense(5, name="out")(nn.tanh(nn.Dense(WIDTH, name="fc")(x)))


class Ensemble(nn.Module):
  @nn.compact
  def __call__(self, x):
    members = nn.vmap(Member, variable_axes={"params": 0}, split_rngs={"params": True},
                      in_axes=None, out_axes=0, axis_size=2)
    h = nn.tanh(nn.Dense(WIDTH, name="embed")(x))
    return members(name="members")(h).mean(0)


class EnsembleLoop(nn.Module):
  @nn.compact
  def __call__(self, x):
    h = nn.tanh(nn.Dense(WIDTH, name="embed")(x))
    return sum(Member(name=f"m{i}")(h) for i in range(2)) / 2


def test_points_inside_nn_vmap_are_stacked_per_member_like_a_loop():
  x = jax.random.normal(jax.random.key(2), (4, 6))
  model = Ensemble()
  params = model.init(jax.random.key(0), x)
  p = dict(params["params"])
  members = p.pop("members")
  loop_params = {"params": {**p, **{f"m{i}": jax.tree.map(lambda a, i=i: a[i], members)
                                     for i in range(2)}}}
  mats = jax.random.normal(jax.random.key(3), (2, 5, WIDTH))
  seen = []

  def projector(error, points):
    out = []
    for pt in points:
      seen.append((pt.path, pt.shape, pt.stack_ndim))
      if pt.stack_ndim:
        out.append(jnp.einsum("bo,mod->mbd", error, mats))
      else:
        out.append(error @ mats[int(pt.path[1])])
    return out

  feedback = lambda module, path: path[-1:] == ("out",)
  loss = lambda m: lambda p: jnp.mean(m.apply(p, x) ** 2)
  g_vmap = jax.jit(dfax.dfa_grad(loss(model), projector=projector, feedback=feedback))(params)
  assert seen == [("members/out/in", (2, 4, WIDTH), 1)]
  g_loop = dfax.dfa_grad(loss(EnsembleLoop()), projector=projector, feedback=feedback)(
      loop_params)
  for i in range(2):
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a[i], b, rtol=1e-5, atol=1e-7),
                 g_vmap["params"]["members"], g_loop["params"][f"m{i}"])
  np.testing.assert_allclose(g_vmap["params"]["embed"]["kernel"],
                             g_loop["params"]["embed"]["kernel"], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("model", [Scanned(remat=True), Ensemble()], ids=["remat_scan", "vmap"])
def test_the_oracle_reproduces_backprop_through_lifted_points(model):
  """dfax.testing records one cotangent per layer (scan, remat) or member (vmap), in order."""
  x = jax.random.normal(jax.random.key(2), (4, 6))
  params = model.init(jax.random.key(0), x)
  loss = _loss(model, x)
  feedback = lambda module, path: path[-1:] in (("out",), ("fc2",))
  make = lambda projector: dfax.dfa_grad(loss, projector=projector, feedback=feedback)
  cotangents = dfax.testing.true_cotangents(make, params)
  copies = LAYERS if isinstance(model, Scanned) else 2
  assert cotangents and all(len(found) == copies for found in cotangents.values()), {
      name: len(found) for name, found in cotangents.items()}
  oracle = dfax.testing.oracle_projector(make, params)
  with jax.default_matmul_precision("highest"):
    exact = jax.grad(loss)(params)
    dfax.testing.assert_trees_close(make(oracle)(params), exact, rtol=1e-5, atol=1e-7)
  zero = make(dfax.projectors.zeros())(params)  # the check could fail: feedback matters here
  assert not np.allclose(zero["params"]["embed"]["kernel"], exact["params"]["embed"]["kernel"])
