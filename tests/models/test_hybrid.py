"""The hybrid method: the last K blocks train by exact backprop, the rest by DFA.

Oracle checks on dfax's scanned Transformer LM and ViT (``bp_blocks=K``): the
last K blocks and the head get exactly ``jax.grad``'s gradients; the blocks
below get exactly pure DFA's (cut after every block, where a block's
gradient depends only on its own feedback), and no exact gradient leaks into
them (zero feedback leaves them at exactly zero).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import dfax
from dfax.models import (TransformerConfig, TransformerLM, ViT, ViTConfig, lm_forward,
                         presets)

N_LAYERS = 4
TOKENS = jax.random.randint(jax.random.key(0), (2, 8), 0, 16)


def _lm(bp_blocks, **kw):
  return TransformerLM(TransformerConfig(vocab_size=16, d_model=16, num_heads=2,
                                         num_layers=N_LAYERS, d_ff=32, max_len=8,
                                         bp_blocks=bp_blocks, **kw))


def _loss(model):
  return lambda p: optax.softmax_cross_entropy_with_integer_labels(
      lm_forward(model, p, TOKENS), TOKENS).mean()


def _as_pure(params):
  """A hybrid's params laid out as the plain model's (``blocks/block`` -> ``blocks``)."""
  p = dict(params["params"])
  p["blocks"] = p["blocks"]["block"]
  return {"params": p}


def _close(a, b):
  return all(np.allclose(x, y, rtol=1e-5, atol=1e-6)
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.parametrize("bp_blocks,remat", [
    (2, False), pytest.param(N_LAYERS, False, marks=pytest.mark.slow),
    pytest.param(2, True, marks=pytest.mark.slow)])
def test_last_blocks_get_backprop_the_rest_pure_dfa(bp_blocks, remat):
  hybrid, pure = _lm(bp_blocks, norm="post", remat=remat), _lm(0, norm="post", remat=remat)
  params = hybrid.init(jax.random.key(1), TOKENS)
  projector = dfax.projectors.identity()  # keyed by nothing: the layouts' paths may differ
  grads = dfax.dfa_grad(_loss(hybrid), projector=projector,
                        feedback=presets.macro_out())(params)
  dfa = dfax.dfa_grad(_loss(pure), projector=projector,
                      feedback=presets.macro_out())(_as_pure(params))
  bp = jax.grad(_loss(pure))(_as_pure(params))
  first = N_LAYERS - bp_blocks
  g, d, b = (_as_pure(grads)["params"]["blocks"], dfa["params"]["blocks"],
             bp["params"]["blocks"])
  assert _close(jax.tree.map(lambda a: a[first:], g), jax.tree.map(lambda a: a[first:], b))
  assert _close(jax.tree.map(lambda a: a[:first], g), jax.tree.map(lambda a: a[:first], d))
  assert _close(grads["params"]["head"], bp["params"]["head"])
  # the exact blocks below the last really differ from what DFA would have given them (the
  # last block's output is the model output: never cut, exact under pure DFA too)
  if bp_blocks >= 2:
    assert not _close(jax.tree.map(lambda a: a[first:-1], g),
                      jax.tree.map(lambda a: a[first:-1], d))
  if first:
    assert _close(grads["params"]["embed"], dfa["params"]["embed"])
  else:  # every block exact: the whole model is backprop
    assert _close(grads["params"]["embed"], bp["params"]["embed"])


def test_no_exact_gradient_leaks_below_the_boundary():
  """Pre-LN, cut after every LayerNorm: the residual stream is never cut, so without the
  boundary the exact blocks' gradient would flow into the DFA blocks through it."""
  hybrid = _lm(2, norm="pre")
  params = hybrid.init(jax.random.key(1), TOKENS)
  grads = dfax.dfa_grad(_loss(hybrid), projector=dfax.projectors.zeros(),
                        feedback=presets.after_ln())(params)
  bp = jax.grad(_loss(hybrid))(params)
  blocks, exact = grads["params"]["blocks"]["block"], bp["params"]["blocks"]["block"]
  assert all(not np.asarray(a[:2]).any() for a in jax.tree.leaves(blocks))
  assert not np.asarray(grads["params"]["embed"]["embedding"]).any()
  assert _close(jax.tree.map(lambda a: a[2:], blocks), jax.tree.map(lambda a: a[2:], exact))
  assert _close(grads["params"]["ln_final"], bp["params"]["ln_final"])


def test_the_last_dfa_block_learns_from_the_feedback_at_the_boundary():
  """Pre-LN, cut after every LayerNorm: the last DFA block's MLP feeds only the exact blocks;
  the boundary is a feedback point, so it still gets the error's projection."""
  hybrid = _lm(2, norm="pre")
  params = hybrid.init(jax.random.key(1), TOKENS)
  seen = []
  gaussian = dfax.projectors.gaussian(jax.random.key(2))

  def recording(error, points):
    seen.extend(p.path for p in points)
    return gaussian(error, points)

  grads = dfax.dfa_grad(_loss(hybrid), projector=recording, feedback=presets.after_ln())(params)
  assert "blocks/exact_boundary" in seen, seen
  blocks = grads["params"]["blocks"]["block"]
  for path, leaf in jax.tree_util.tree_leaves_with_path(blocks):
    assert np.asarray(leaf[:2]).reshape(2, -1).any(axis=1).all(), jax.tree_util.keystr(path)


def test_hybrid_is_the_same_function_under_jax_grad():
  hybrid, pure = _lm(2), _lm(0)
  params = hybrid.init(jax.random.key(1), TOKENS)
  np.testing.assert_allclose(lm_forward(hybrid, params, TOKENS),
                             lm_forward(pure, _as_pure(params), TOKENS), rtol=1e-6)
  assert _close(_as_pure(jax.grad(_loss(hybrid))(params)),
                jax.grad(_loss(pure))(_as_pure(params)))


@pytest.mark.slow
def test_vit_hybrid():
  images = jax.random.normal(jax.random.key(2), (2, 14, 14, 1))
  labels = jnp.array([1, 3])
  model = ViT(ViTConfig(patch=7, d_model=16, num_heads=2, num_layers=3, d_ff=32,
                        bp_blocks=1))
  params = model.init(jax.random.key(3), images)
  loss = lambda p: optax.softmax_cross_entropy_with_integer_labels(
      model.apply(p, images), labels).mean()
  grads = dfax.dfa_grad(loss, projector=dfax.projectors.zeros(),
                        feedback=presets.after_ln())(params)
  bp = jax.grad(loss)(params)
  blocks, exact = grads["params"]["blocks"]["block"], bp["params"]["blocks"]["block"]
  assert _close(jax.tree.map(lambda a: a[2:], blocks), jax.tree.map(lambda a: a[2:], exact))
  assert all(not np.asarray(a[:2]).any() for a in jax.tree.leaves(blocks))


def test_bp_blocks_out_of_range_is_refused():
  with pytest.raises(ValueError, match="bp_blocks"):
    TransformerConfig(num_layers=2, bp_blocks=3)


# --- the CLI: --config.dfa.bp_blocks=K ---------------------------------------------------

def _lm_config(tmp_overrides=None):
  import pathlib  # noqa: PLC0415
  from dfax.train.config_file import load_config  # noqa: PLC0415
  repo = pathlib.Path(__file__).resolve().parents[2]
  tiny = {"model.d_model": 16, "model.num_heads": 2, "model.num_layers": 3, "model.d_ff": 32,
          "dataset.seq_len": 16, "dataset.eval_windows": 8, "batch_size": 4, "num_steps": 3,
          "eval_every": 3, "alignment_every": 3, "checkpoint_every": 3, "eval_batch_size": 8,
          "progress_bar": False, "tensorboard": False, "dfa.bp_blocks": 2, "warmup_steps": 1}
  return load_config(repo / "configs" / "shakespeare_lm.py", **{**tiny, **(tmp_overrides or {})})


@pytest.mark.slow
def test_cli_hybrid_run_trains_and_logs_exact_alignment(tmp_path):
  from dfax.train import metrics  # noqa: PLC0415
  from dfax.train.trainer import train_and_evaluate  # noqa: PLC0415
  results = train_and_evaluate(_lm_config(), str(tmp_path))
  assert results["status"] == "completed" and np.isfinite(results["val_loss"])
  rows = [r for r in metrics.read_metrics(str(tmp_path / "metrics.jsonl")) if "alignment" in r]
  cosines = rows[-1]["alignment"]
  # the run's own gradients against backprop's: the exact blocks align perfectly
  assert abs(cosines["blocks/1"] - 1) < 1e-5 and abs(cosines["blocks/2"] - 1) < 1e-5
  assert abs(cosines["head"] - 1) < 1e-5
  assert cosines["blocks/0"] < 0.99  # the DFA block


@pytest.mark.parametrize("overrides,match", [
    ({"dfa.bp_blocks": 4}, "more than model.num_layers=3"),
    ({"method": "bp"}, "does not use feedback"),
    ({"dfa.bp_blocks": -1}, "integer >= 0"),
])
def test_cli_refuses_a_bad_split(tmp_path, overrides, match):
  from dfax.train.errors import ConfigError  # noqa: PLC0415
  from dfax.train.trainer import train_and_evaluate  # noqa: PLC0415
  with pytest.raises(ConfigError, match=match):
    train_and_evaluate(_lm_config(overrides), str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()
