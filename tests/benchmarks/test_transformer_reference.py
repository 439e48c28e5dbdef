"""benchmarks/step_time.py's hand-written Transformer DFA gradient, and its FLOP count.

The benchmark times dfax's DFA gradient against ``handwritten_lm_dfa``, the same
gradient written as one ``jax.vjp`` per segment. The comparison only means
something if the two compute the same thing: here they must agree to float32
round-off, for both layouts it writes (pre-LN ``after_ln``, post-LN
``macro_out``), both places the error is taken, and with the layers scanned
(always) and rematerialised. ``lm_flops``, the analytic floor printed beside
the measured ratio, is checked against a count by hand.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import dfax
from dfax.models import TransformerConfig, TransformerLM, lm_forward, presets

REPO = pathlib.Path(__file__).resolve().parents[2]
SMALL = TransformerConfig(vocab_size=13, d_model=16, num_heads=2, num_layers=3, d_ff=32,
                          max_len=8)


@pytest.fixture(scope="module")
def step_time():
  spec = importlib.util.spec_from_file_location("bench_step_time",
                                                REPO / "benchmarks" / "step_time.py")
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module  # its dataclasses look their module up while being made
  spec.loader.exec_module(module)
  return module


def _both(config, preset, step_time, backprop: bool = False):
  model = TransformerLM(config)
  tokens = jax.random.randint(jax.random.key(3), (2, config.max_len + 1), 0, config.vocab_size)
  x, y = tokens[:, :-1], tokens[:, 1:]
  params = model.init(jax.random.key(4), x)
  # non-trivial LayerNorm parameters, so that their gradients and Jacobians are tested too
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(5), len(leaves))
  params = jax.tree.unflatten(treedef, [w + 0.1 * jax.random.normal(k, w.shape)
                                        for w, k in zip(leaves, keys)])
  projector = dfax.projectors.gaussian(jax.random.key(0))
  loss_fn = lambda p: optax.softmax_cross_entropy_with_integer_labels(
      lm_forward(model, p, x), y).mean()
  with jax.default_matmul_precision("highest"):
    dfa = jax.jit(dfax.dfa_value_and_grad(loss_fn, feedback=presets.PRESETS[preset](),
                                          projector=projector))(params)
    ref = jax.jit(step_time.handwritten_lm_dfa(config, preset, projector))(params, x, y)
    bp = jax.jit(jax.value_and_grad(loss_fn))(params) if backprop else None
  return dfa, ref, bp


LAYOUTS = [("after_ln", "pre"), ("macro_out", "post")]


def _assert_same_gradients(ref_grads, grads):
  """Equal to 1e-5 of each leaf, or 1e-5 of the largest gradient entry where a leaf is ~0.

  The attention's key bias gets a zero gradient in exact arithmetic (the softmax over keys
  ignores a shift common to all keys), so both sides hold round-off there.
  """
  assert jax.tree.structure(ref_grads) == jax.tree.structure(grads)
  scale = max(float(jnp.abs(g).max()) for g in jax.tree.leaves(grads))
  for (path, g), r in zip(jax.tree_util.tree_leaves_with_path(grads), jax.tree.leaves(ref_grads)):
    np.testing.assert_allclose(r, g, rtol=1e-5, atol=1e-5 * scale,
                               err_msg=jax.tree_util.keystr(path))


@pytest.mark.parametrize("error_at", [  # "hidden": the LM configs' and the benchmark's default
    "hidden", pytest.param("logits", marks=pytest.mark.slow)])
@pytest.mark.parametrize("preset, norm", LAYOUTS)
def test_the_handwritten_gradient_is_dfax_dfa_gradient(step_time, preset, norm, error_at):
  config = dataclasses.replace(SMALL, norm=norm, error_at=error_at)
  (loss, grads), (ref_loss, ref_grads), (_, bp_grads) = _both(config, preset, step_time,
                                                                    backprop=True)
  np.testing.assert_allclose(ref_loss, loss, rtol=1e-6)
  _assert_same_gradients(ref_grads, grads)
  # the head trains exactly; the blocks do not (it is DFA, not backprop)
  np.testing.assert_allclose(ref_grads["params"]["head"]["kernel"],
                             bp_grads["params"]["head"]["kernel"], rtol=1e-5, atol=1e-7)
  assert not np.allclose(ref_grads["params"]["blocks"]["attn"]["query"]["kernel"],
                         bp_grads["params"]["blocks"]["attn"]["query"]["kernel"], atol=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("preset, norm", [("macro_out", "post")])  # remat is layout-blind
def test_the_handwritten_gradient_matches_dfax_with_rematerialised_layers(step_time, preset,
                                                                          norm):
  config = dataclasses.replace(SMALL, norm=norm, remat=True, num_layers=2)
  (loss, grads), (ref_loss, ref_grads), _ = _both(config, preset, step_time)
  np.testing.assert_allclose(ref_loss, loss, rtol=1e-6)
  _assert_same_gradients(ref_grads, grads)


@pytest.mark.slow
def test_an_unrolled_stack_is_the_handwritten_gradient(step_time):
  config = dataclasses.replace(SMALL, norm="post", scan_unroll=SMALL.num_layers)
  (loss, grads), (ref_loss, ref_grads), _ = _both(config, "macro_out", step_time)
  np.testing.assert_allclose(ref_loss, loss, rtol=1e-6)
  _assert_same_gradients(ref_grads, grads)


@pytest.mark.parametrize("preset, norm", LAYOUTS)
def test_unrolled_dfax_compiles_to_the_handwritten_dots(step_time, preset, norm):
  """Unrolled, XLA drops every cotangent dfax computes and DFA discards: the floor's dots.

  Inside one scan body the input cotangent of every block is computed, since block 0's
  (the embeddings') is needed: under ``macro_out`` the rolled DFA program has more dots per
  layer than the hand-written one. Unrolled, each layer's dropped cotangent is dead code.
  """
  model = TransformerLM(dataclasses.replace(SMALL, norm=norm, scan_unroll=SMALL.num_layers))
  tokens = jax.random.randint(jax.random.key(3), (2, SMALL.max_len + 1), 0, SMALL.vocab_size)
  x, y = tokens[:, :-1], tokens[:, 1:]
  params = model.init(jax.random.key(4), x)
  fns = step_time.gradient_fns(model, presets.PRESETS[preset](), preset)
  dots = {name: step_time.compiled_dots(fn, params, x, y) for name, fn in fns.items()}
  assert dots["dfa_grad"] == dots["handwritten_dfa_grad"] < dots["bp_grad"], dots


def test_a_layout_without_a_handwritten_gradient_is_refused(step_time):
  projector = dfax.projectors.gaussian(jax.random.key(0))
  with pytest.raises(ValueError, match="no hand-written DFA gradient"):
    step_time.handwritten_lm_dfa(SMALL, "macro_out", projector)  # pre-LN: not written


# --- the analytic floor ------------------------------------------------------------------------

TINY = TransformerConfig(vocab_size=5, d_model=4, num_heads=2, num_layers=2, d_ff=8, max_len=3)


def test_flop_count_matches_a_hand_count_on_a_tiny_layout(step_time):
  b, t, n, d, ff, v = 2, 3, 6, 4, 8, 5  # batch, seq, tokens, d_model, d_ff, vocab
  qkv, attn, out, mlp, head = 2 * n * d * d, 2 * b * t * t * d, 2 * n * d * d, 2 * n * d * ff, (
      2 * n * d * v)
  block = 3 * qkv + 2 * attn + out + 2 * mlp  # 3*192 + 2*144 + 192 + 2*384 = 1824
  forward = 2 * block + head  # 3888
  assert (block, forward) == (1824, 3888)

  f = step_time.lm_flops(dataclasses.replace(TINY, norm="pre", error_at="logits"), b, t,
                         "after_ln")
  # backprop: every input cotangent (the embeddings train) -> twice the forward
  assert (f["forward"], f["bp_backward"]) == (forward, 2 * forward)
  # after_ln: no input cotangent for Q, K, V, fc1 of each block, nor for the head; five points
  # (two per block and ln_final), each 2 * n * vocab * d
  skipped = 2 * (3 * qkv + mlp) + head
  assert f["projections"] == 5 * 2 * n * v * d == 1200
  assert f["dfa_backward"] == 2 * forward - skipped + 1200 == 7776 - 2160 + 1200

  g = step_time.lm_flops(dataclasses.replace(TINY, norm="post", error_at="hidden"), b, t,
                         "macro_out")
  # macro_out, error before the head: only block 1's Q, K, V skip their input cotangent; the
  # two points take the d-wide error: 2 * n * d * d each
  assert g["dfa_backward"] == 2 * forward - 3 * qkv + 2 * 2 * n * d * d == 7776 - 576 + 384
  assert g["dfa_over_bp_gradient"] == pytest.approx((forward + 7584) / (3 * forward))

  h = step_time.lm_flops(dataclasses.replace(TINY, norm="pre", error_at="hidden"), b, t,
                         "after_ln")
  # after_ln, error before the head: ln_final and the head are exact (the head's input
  # cotangent is the error); four points, 2 * n * d * d each
  assert h["dfa_backward"] == 2 * forward - 2 * (3 * qkv + mlp) + 4 * 192 == 7776 - 1920 + 768


@pytest.mark.parametrize("preset, norm", LAYOUTS)
@pytest.mark.parametrize("error_at", ["hidden", "logits"])
def test_the_analytic_floor_is_below_backprop_at_the_benchmark_size(step_time, preset, norm,
                                                                   error_at):
  config = TransformerConfig(vocab_size=96, d_model=128, num_heads=4, num_layers=4, d_ff=512,
                             max_len=128, norm=norm, error_at=error_at)
  f = step_time.lm_flops(config, 16, 128, preset)
  # the forward is the same on both sides, so the gradient's ratio lies between the backward's
  # and 1
  assert 0.5 < f["dfa_over_bp_backward"] < f["dfa_over_bp_gradient"] < 1.0
