"""Transformer LM and ViT: presets select the intended points; error before/after the head."""

import dataclasses
import functools
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import dfax
from dfax.testing import assert_trees_close, oracle_projector
from dfax.models import TransformerConfig, TransformerLM, ViT, ViTConfig, lm_forward, presets
from dfax.models.transformer import Block
from dfax.train import families
from dfax.train.config_file import load_config

REPO = pathlib.Path(__file__).resolve().parents[2]

CFG = TransformerConfig(vocab_size=13, d_model=16, num_heads=2, num_layers=3, d_ff=32,
                        max_len=8)


@functools.cache  # one init per config and process; the tests do not change what it returns
def _lm(config=CFG):
  model = TransformerLM(config)
  tokens = jax.random.randint(jax.random.key(0), (2, 7), 0, config.vocab_size)
  return model, model.init(jax.random.key(1), tokens[:, :-1]), tokens[:, :-1], tokens[:, 1:]


def _loss(model):
  def loss_fn(p, x, y):
    return optax.softmax_cross_entropy_with_integer_labels(lm_forward(model, p, x), y).mean()
  return loss_fn


def _recording(log):
  def projector(error, points):
    log.append((error.shape, [(p.path, p.shape, p.stack_ndim) for p in points]))
    return dfax.projectors.gaussian(jax.random.key(5))(error, points)
  return projector


def _keeping(log, sent):
  """A recording projector that also keeps each point's cotangent in ``sent``."""
  def projector(error, points):
    cots = _recording(log)(error, points)
    sent.update({p.path: c for p, c in zip(points, cots)})
    return cots
  return projector


@pytest.mark.slow
def test_macro_one_point_per_block_and_error_before_the_head():
  model, params, x, y = _lm()
  log = []
  g = jax.jit(dfax.dfa_grad(_loss(model), projector=_recording(log),
                            feedback=presets.macro()))(params, x, y)
  assert log == [((2, 6, 16), [("blocks/in", (3, 2, 6, 16), 1)])]  # error is dL/dh
  bp = jax.jit(jax.grad(_loss(model)))(params, x, y)
  for name in ("head", "ln_final"):  # the tail trains exactly
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
                 g["params"][name], bp["params"][name])


@pytest.mark.slow
def test_macro_out_cuts_every_block_output_and_trains_the_embeddings_through_block_0():
  model, params, x, y = _lm()
  log, sent = [], {}
  projector = _keeping(log, sent)
  g = dfax.dfa_grad(_loss(model), projector=projector,
                    feedback=presets.macro_out())(params, x, y)
  assert log == [((2, 6, 16), [("blocks/out", (3, 2, 6, 16), 1)])]
  bp = jax.jit(jax.grad(_loss(model)))(params, x, y)
  for name in ("head", "ln_final"):  # only what follows the last block is exact
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
                 g["params"][name], bp["params"][name])
  # The embeddings have no point of their own: their gradient is block 0's
  # feedback pulled back through block 0.
  first = jax.tree.map(lambda a: a[0], params["params"]["blocks"])
  cfg = dataclasses.replace(CFG, num_layers=1)

  def block0(table):
    h = table[x] + params["params"]["pos_embed"][: x.shape[1]]
    return Block(cfg).apply({"params": first}, h)[0]

  _, pull = jax.vjp(block0, params["params"]["embed"]["embedding"])
  np.testing.assert_allclose(g["params"]["embed"]["embedding"],
                             pull(sent["blocks/out"][0])[0], rtol=1e-4, atol=1e-6)


def test_error_after_the_head_projects_the_vocabulary_error():
  model, params, x, y = _lm(dataclasses.replace(CFG, error_at="logits"))
  log = []
  jax.eval_shape(dfax.dfa_grad(_loss(model), projector=_recording(log),
                               feedback=presets.macro()), params, x, y)
  assert log[0][0] == (2, 6, 13)


def test_micro_preset_three_points_per_block():
  model, params, x, y = _lm()
  log = []
  jax.eval_shape(dfax.dfa_grad(_loss(model), projector=_recording(log),
                               feedback=presets.micro()), params, x, y)
  paths = [p for p, _, _ in log[0][1]]
  assert paths == ["blocks/attn_res/in", "blocks/mlp_hidden/in", "blocks/out/in"]
  shapes = [s for _, s, _ in log[0][1]]
  assert shapes == [(3, 2, 6, 16), (3, 2, 6, 32), (3, 2, 6, 16)]


def test_sublayer_preset_cuts_blocks_and_normalised_sublayer_inputs():
  model, params, x, y = _lm()
  log, sent = [], {}
  projector = _keeping(log, sent)
  g = dfax.dfa_grad(_loss(model), projector=projector,
                    feedback=presets.sublayer())(params, x, y)
  # attention gets its normalised input once, though it is passed as query and key/value
  assert sorted(p for p, _, _ in log[0][1]) == ["blocks/attn/in0", "blocks/fc1/in", "blocks/in"]
  assert all(shape == (3, 2, 6, 16) and stack == 1 for _, shape, stack in log[0][1])
  # Each LayerNorm trains from the feedback at its own output alone: its bias
  # gradient is that cotangent summed over batch and tokens.
  for norm, point in (("ln_attn", "blocks/attn/in0"), ("ln_mlp", "blocks/fc1/in")):
    np.testing.assert_allclose(g["params"]["blocks"][norm]["bias"],
                               sent[point].sum(axis=(1, 2)), rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_post_ln_normalises_each_residual_add_and_keeps_the_presets():
  post = dataclasses.replace(CFG, norm="post")
  model, params, x, y = _lm(post)
  assert set(params["params"]) == {"embed", "pos_embed", "blocks", "head"}  # no final LN
  h = model.apply(params, x, method="hidden")
  # the last block's output is a fresh LayerNorm (scale 1, bias 0 at init) of its residual sum
  np.testing.assert_allclose(h.mean(-1), 0.0, atol=1e-5)
  np.testing.assert_allclose(h.std(-1), 1.0, rtol=1e-3)
  log = []
  jax.eval_shape(dfax.dfa_grad(_loss(model), projector=_recording(log),
                               feedback=presets.micro()), params, x, y)
  assert [p for p, _, _ in log[0][1]] == ["blocks/attn_res/in", "blocks/mlp_hidden/in",
                                          "blocks/out/in"]
  # under macro_out the head alone follows the last cut, and trains exactly
  g, bp = jax.jit(lambda p: (dfax.dfa_grad(_loss(model), feedback=presets.macro_out())(
      p, x, y), jax.grad(_loss(model))(p, x, y)))(params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
               g["params"]["head"], bp["params"]["head"])
  with pytest.raises(ValueError, match="'pre' or 'post'"):
    TransformerConfig(norm="rms")


def test_after_ln_cuts_every_layernorm_output_and_the_head_is_exact():
  model, params, x, y = _lm(dataclasses.replace(CFG, error_at="logits"))
  log = []
  g = dfax.dfa_grad(_loss(model), projector=_recording(log),
                    feedback=presets.after_ln())(params, x, y)
  assert log == [((2, 6, 13), [("blocks/ln_attn/out", (3, 2, 6, 16), 1),
                               ("blocks/ln_mlp/out", (3, 2, 6, 16), 1),
                               ("ln_final/out", (2, 6, 16), 0)])]
  bp = jax.grad(_loss(model))(params, x, y)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
               g["params"]["head"], bp["params"]["head"])
  assert not np.allclose(g["params"]["ln_final"]["scale"], bp["params"]["ln_final"]["scale"])


@pytest.mark.slow
def test_after_block_ln_leaves_the_last_mlp_final_layernorm_and_head_to_backprop():
  model, params, x, y = _lm(dataclasses.replace(CFG, error_at="logits"))
  log = []
  g = dfax.dfa_grad(_loss(model), projector=_recording(log),
                    feedback=presets.after_block_ln())(params, x, y)
  assert log == [((2, 6, 13), [("blocks/ln_attn/out", (3, 2, 6, 16), 1),
                               ("blocks/ln_mlp/out", (3, 2, 6, 16), 1)])]
  bp = jax.grad(_loss(model))(params, x, y)
  tail = lambda grads: {"head": grads["params"]["head"], "ln_final": grads["params"]["ln_final"],
                        "last_mlp": jax.tree.map(lambda a: a[-1], {
                            k: grads["params"]["blocks"][k] for k in ("fc1", "fc2")})}
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
               tail(g), tail(bp))
  # the blocks below the last one train from feedback, not from backprop ...
  assert not np.allclose(g["params"]["blocks"]["fc2"]["kernel"][0],
                         bp["params"]["blocks"]["fc2"]["kernel"][0])
  # ... plus the head's exact error along the uncut residual stream: zero feedback still
  # trains every block, unlike after_ln, where it trains the head alone
  for preset, first_block_learns in ((presets.after_block_ln, True), (presets.after_ln, False)):
    zero = dfax.dfa_grad(_loss(model), projector=dfax.projectors.zeros(),
                         feedback=preset())(params, x, y)
    assert bool(np.any(zero["params"]["blocks"]["fc2"]["kernel"][0])) == first_block_learns


@pytest.mark.slow
def test_remat_gives_the_same_dfa_grads():
  model, params, x, y = _lm()
  remat, _, _, _ = _lm(dataclasses.replace(CFG, remat=True))
  chosen = (presets.macro, presets.macro_out, presets.micro, presets.sublayer)
  grads = lambda m, p: [dfax.dfa_grad(_loss(m), feedback=preset())(p, x, y)
                        for preset in chosen]
  plain, with_remat = jax.device_get(jax.jit(  # every preset, both models: one compile
      lambda p: (grads(model, p), grads(remat, p)))(params))
  for a, b in zip(plain, with_remat):
    jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-6), a, b)
    assert jax.tree.structure(a) == jax.tree.structure(b)


def test_scan_unroll_changes_the_program_not_the_gradients():
  model, params, x, y = _lm(dataclasses.replace(CFG, norm="post"))
  unrolled, params_unrolled, _, _ = _lm(dataclasses.replace(CFG, norm="post", scan_unroll=3))
  assert_trees_close(params, params_unrolled, rtol=0, atol=0)  # the same parameters
  chosen = (presets.macro_out, presets.micro)  # points at the block output, and inside it
  grads = lambda m, p: [dfax.dfa_value_and_grad(_loss(m), feedback=preset())(p, x, y)
                        for preset in chosen]
  with jax.default_matmul_precision("highest"):
    rolled, with_unroll = jax.device_get(jax.jit(
        lambda p: (grads(model, p), grads(unrolled, p)))(params))
  for a, b in zip(rolled, with_unroll):
    assert_trees_close(a, b, rtol=1e-5, atol=1e-7)
  with pytest.raises(ValueError, match="scan_unroll must be an integer >= 1"):
    TransformerConfig(scan_unroll=0)


@pytest.mark.parametrize("config_file, family", [("shakespeare_lm.py", "transformer_lm"),
                                                 ("vit_mnist.py", "vit")])
def test_the_cli_builds_the_unroll_it_is_given(config_file, family):
  config = load_config(REPO / "configs" / config_file, **{"model.scan_unroll": 2})
  assert families.get(family).build(config, 10).config.scan_unroll == 2


def test_depth_residual_init_scales_only_the_kernels_into_the_residual_stream():
  """GPT-2's initialisation: attention's output and fc2 kernels times 1/sqrt(2L), to the bit
  under jit; every other parameter, and the function, unchanged."""
  deep = dataclasses.replace(CFG, residual_init="depth")
  tokens = jnp.zeros((2, 8), jnp.int32)
  plain_params, deep_params = (jax.jit(TransformerLM(c).init)(jax.random.key(0), tokens)
                               for c in (CFG, deep))
  flat_plain = dict(jax.tree_util.tree_leaves_with_path(plain_params))
  into_residual = {"attn/out/kernel", "fc2/kernel"}
  seen = set()
  for path, leaf in jax.tree_util.tree_leaves_with_path(deep_params):
    name = "/".join(k.key for k in path[2:])
    expected = flat_plain[path]
    if name in into_residual:
      seen.add(name)
      expected = expected * 6 ** -0.5
    np.testing.assert_array_equal(leaf, expected, err_msg=name)
  assert seen == into_residual
  with pytest.raises(ValueError, match="residual_init must be 'default' or 'depth'"):
    TransformerConfig(residual_init="gpt2")


def test_the_cli_builds_the_residual_init_it_is_given():
  config = load_config(REPO / "configs" / "shakespeare_lm.py", **{"model.residual_init": "depth"})
  assert families.get("transformer_lm").build(config, 10).config.residual_init == "depth"


@pytest.mark.slow
def test_vit_macro_points_and_training_step():
  model = ViT(ViTConfig(d_model=16, num_heads=2, num_layers=2, d_ff=32))
  images = jax.random.uniform(jax.random.key(0), (4, 28, 28, 1))
  labels = jnp.arange(4) % 10
  params = model.init(jax.random.key(1), images)
  log = []
  loss = lambda p: optax.softmax_cross_entropy_with_integer_labels(
      model.apply(p, images), labels).mean()
  g = jax.jit(dfax.dfa_grad(loss, projector=_recording(log), feedback=presets.macro()))(
      params)
  assert log == [((4, 10), [("blocks/in", (2, 4, 16, 16), 1)])]
  assert all(bool(jnp.isfinite(a).all()) for a in jax.tree.leaves(g))


def test_vit_refuses_images_its_patches_do_not_tile():
  model = ViT(ViTConfig(patch=5, d_model=16, num_heads=2, num_layers=1, d_ff=32))
  with pytest.raises(ValueError, match="28x28 images do not tile into 5x5 patches"):
    model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))


def test_vit_norm_reaches_its_blocks():
  images = jax.random.uniform(jax.random.key(0), (2, 28, 28, 1))
  cfg = ViTConfig(d_model=16, num_heads=2, num_layers=2, d_ff=32)
  params = ViT(cfg).init(jax.random.key(1), images)  # same parameter tree for both
  pre = ViT(cfg).apply(params, images)
  post = ViT(dataclasses.replace(cfg, norm="post")).apply(params, images)
  assert bool(jnp.isfinite(post).all())
  assert float(jnp.abs(pre - post).max()) > 1e-3


@pytest.mark.slow
def test_vit_pre_logits_after_ln_head_points_exact_head_and_oracle():
  """after_ln_head on a ViT with a pre-logits layer: DFA trains that layer from a cut
  in front of the head, the head alone trains exactly, the oracle gives back jax.grad."""
  model = ViT(ViTConfig(d_model=16, num_heads=2, num_layers=2, d_ff=32, pre_logits=24))
  images = jax.random.uniform(jax.random.key(0), (3, 28, 28, 1))
  labels = jnp.arange(3)
  params = model.init(jax.random.key(1), images)
  assert params["params"]["pre_logits"]["kernel"].shape == (16, 24)
  loss = lambda p: optax.softmax_cross_entropy_with_integer_labels(
      model.apply(p, images), labels).mean()
  make = lambda projector: dfax.dfa_grad(loss, projector=projector,
                                         feedback=presets.after_ln_head())
  log = []
  g = jax.jit(make(_recording(log)))(params)  # the log is written while tracing
  assert log == [((3, 10), [("blocks/ln_attn/out", (2, 3, 16, 16), 1),
                            ("blocks/ln_mlp/out", (2, 3, 16, 16), 1),
                            ("ln_final/out", (3, 16), 0), ("head/in", (3, 24), 0)])]
  oracle = oracle_projector(make, params)
  exact, zero, with_oracle = jax.jit(lambda p: (
      jax.grad(loss)(p), make(dfax.projectors.zeros())(p), make(oracle)(p)))(params)
  assert_trees_close(g["params"]["head"], exact["params"]["head"], rtol=1e-4)
  assert not np.allclose(g["params"]["pre_logits"]["kernel"],
                         exact["params"]["pre_logits"]["kernel"])
  assert_trees_close(with_oracle, exact, rtol=1e-4, atol=1e-6)
  # zero feedback (the layout's control) trains the head alone
  trained = {k for k, v in zero["params"].items() if any(np.any(a) for a in jax.tree.leaves(v))}
  assert trained == {"head"}
