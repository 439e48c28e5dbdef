"""HuggingFace Flax models from the transformers package, as its Flax scripts call them.

``run_clm_flax.py``, ``run_mlm_flax.py`` and ``run_image_classification.py``
all compute ``state.apply_fn(**batch, params=params, dropout_rng=dropout_rng,
train=True)[0]``: the model returns a ``ModelOutput`` and the loss takes its
logits. dfax takes the error at the logits (the output's first floating
leaf) and cuts in front of, or after (``dfax.after``), the model's own block
class. For each model: the gradient runs under jit, the tail is exactly
``jax.grad``'s, an oracle projector reproduces ``jax.grad`` for every
parameter, and a few Adam steps lower the loss.

Kept cheap on two cores: each model's weights are initialised under one jit
(``_do_init=False``), once per process, and the checks of one model share one
compile; only the oracle's recording pass runs eagerly (it must).
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import dfax
from dfax.testing import oracle_projector

transformers = pytest.importorskip("transformers")
from transformers.models.bert import modeling_flax_bert as hf_bert  # noqa: E402
from transformers.models.gpt2 import modeling_flax_gpt2 as hf_gpt2  # noqa: E402
from transformers.models.vit import modeling_flax_vit as hf_vit  # noqa: E402

VOCAB, TOKENS, BATCH = 40, 12, 4
TINY = dict(hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)


def _counting_ids():
  """Each row counts up from its own start: the next (or a masked) token is learnable."""
  return (jnp.arange(BATCH)[:, None] * 7 + jnp.arange(TOKENS)[None, :]) % VOCAB


def _gpt2():
  config = transformers.GPT2Config(n_layer=2, n_embd=16, n_head=2, vocab_size=VOCAB,
                                   n_positions=TOKENS)
  model = hf_gpt2.FlaxGPT2LMHeadModel(config, seed=0, _do_init=False)
  ids = _counting_ids()

  def loss_fn(params, batch, dropout_rng):  # run_clm_flax.py's loss
    logits = model(batch["input_ids"], params=params, dropout_rng=dropout_rng, train=True)[0]
    shift_logits, shift_labels = logits[..., :-1, :], batch["input_ids"][..., 1:]
    return optax.softmax_cross_entropy_with_integer_labels(shift_logits, shift_labels).mean()

  return model, {"input_ids": ids}, loss_fn, hf_gpt2.FlaxGPT2Block, ("transformer", "ln_f")


def _bert():
  config = transformers.BertConfig(num_hidden_layers=2, hidden_size=16, num_attention_heads=2,
                                   intermediate_size=32, vocab_size=VOCAB,
                                   max_position_embeddings=TOKENS, **TINY)
  model = hf_bert.FlaxBertForMaskedLM(config, seed=0, _do_init=False)
  ids = _counting_ids()
  labels = jnp.where(jnp.arange(TOKENS) % 3 == 0, ids, -100)

  def loss_fn(params, batch, dropout_rng):  # run_mlm_flax.py's loss
    logits = model(batch["input_ids"], params=params, dropout_rng=dropout_rng, train=True)[0]
    weights = (batch["labels"] >= 0).astype(jnp.float32)
    loss = optax.softmax_cross_entropy_with_integer_labels(
        logits, jnp.maximum(batch["labels"], 0)) * weights
    return loss.sum() / weights.sum()

  return (model, {"input_ids": ids, "labels": labels}, loss_fn, hf_bert.FlaxBertLayer,
          ("cls", "predictions", "transform", "LayerNorm"))


def _vit():
  config = transformers.ViTConfig(image_size=8, patch_size=4, num_channels=1, hidden_size=16,
                                  num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=32, num_labels=3, **TINY)
  model = hf_vit.FlaxViTForImageClassification(config, seed=0, _do_init=False)
  labels = jnp.arange(BATCH) % 3
  patterns = jax.random.normal(jax.random.key(0), (3, 1, 8, 8))
  pixels = patterns[labels] + 0.3 * jax.random.normal(jax.random.key(1), (BATCH, 1, 8, 8))

  def loss_fn(params, batch, dropout_rng):  # run_image_classification.py's loss
    logits = model(batch["pixel_values"], params=params, dropout_rng=dropout_rng,
                   train=True)[0]
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["labels"]).mean()

  return (model, {"pixel_values": pixels, "labels": labels}, loss_fn, hf_vit.FlaxViTLayer,
          ("vit", "layernorm"))


MODELS = {"gpt2": _gpt2, "bert": _bert, "vit": _vit}


@functools.cache
def _params(name):
  """The model's initial weights, as ``from_config(seed=0)`` makes them, under one jit."""
  model = MODELS[name]()[0]
  return jax.jit(model.init_weights, static_argnums=1)(jax.random.key(0), model.input_shape)


def _assert_close(actual, expected, rtol=1e-5, atol=1e-6):
  """``dfax.testing.assert_trees_close`` on host arrays (no eager device ops to compile)."""
  actual, expected = jax.device_get((actual, expected))
  assert jax.tree.structure(actual) == jax.tree.structure(expected)
  for (path, a), e in zip(jax.tree_util.tree_flatten_with_path(actual)[0],
                          jax.tree.leaves(expected)):
    np.testing.assert_allclose(a, e, rtol=rtol, atol=atol, err_msg=jax.tree_util.keystr(path))
# The oracle runs eagerly (slow on 2 cores): cuts after the blocks on GPT-2 and ViT, in front
# of them on BERT (tests/thirdparty/test_linen_examples.py covers both on linen models too),
# and after every LayerNorm on GPT-2 (the layout that learns on pre-LN blocks).
LAYOUTS = {"in_front": lambda block: block, "after": dfax.after,
           "after_ln": lambda block: dfax.after(nn.LayerNorm)}
ORACLE_CASES = [("gpt2", "after"), ("gpt2", "after_ln"), ("bert", "in_front"), ("vit", "after")]


def _get(tree, path):
  for key in path:
    tree = tree[key]
  return tree


@pytest.mark.parametrize("name,layout", ORACLE_CASES)
@pytest.mark.slow
def test_hf_model_oracle_tail_and_jit(name, layout):
  _, batch, loss_fn, block, tail = MODELS[name]()
  params, rng = _params(name), jax.random.key(7)
  feedback = LAYOUTS[layout](block)
  make = lambda p: dfax.dfa_grad(loss_fn, projector=p, feedback=feedback)
  oracle = oracle_projector(make, params, batch, rng)  # eager: records the true cotangents
  gaussian = make(dfax.projectors.gaussian(jax.random.key(1)))
  exact, dfa, with_oracle = jax.device_get(jax.jit(
      lambda *a: (jax.grad(loss_fn)(*a), gaussian(*a), make(oracle)(*a)))(params, batch, rng))

  if layout != "after_ln":  # after_ln cuts after ln_f too: the tied head has no exact tail
    _assert_close(_get(dfa, tail), _get(exact, tail))
  assert jax.tree.structure(dfa) == jax.tree.structure(exact)
  differs = [not np.allclose(a, b, rtol=1e-3, atol=1e-6)
             for a, b in zip(jax.tree.leaves(dfa), jax.tree.leaves(exact))]
  assert sum(differs) > len(differs) // 3  # the blocks did get DFA, not backprop
  _assert_close(with_oracle, exact, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.slow
def test_hf_model_trains_with_adam(name):
  model, batch, loss_fn, block, _ = MODELS[name]()
  optimizer = optax.adam(1e-2)
  grad_fn = dfax.dfa_value_and_grad(loss_fn, feedback=dfax.after(block))

  @jax.jit
  def step(params, opt_state, rng):
    loss, grads = grad_fn(params, batch, rng)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  params = _params(name)
  opt_state, losses = optimizer.init(params), []
  for i in range(20):
    params, opt_state, loss = step(params, opt_state, jax.random.key(i))
    losses.append(float(loss))
  assert losses[-1] < 0.8 * losses[0], losses


def test_embedding_only_selection_is_refused_not_silent_backprop():
  import flax.linen as nn

  _, batch, loss_fn, _, _ = _gpt2()
  with pytest.raises(ValueError, match=r"made no feedback point.*wte \(Embed\)"):
    jax.jit(dfax.dfa_grad(loss_fn, feedback=nn.Embed))(_params("gpt2"), batch,
                                                       jax.random.key(0))


@pytest.mark.slow
def test_hf_gradient_checkpointing_gives_the_same_dfa_gradients():
  model, batch, loss_fn, block, _ = _bert()
  params, rng = _params("bert"), jax.random.key(7)
  grad_fn = lambda f: jax.jit(dfax.dfa_grad(f, feedback=dfax.after(block)))
  plain = grad_fn(loss_fn)(params, batch, rng)
  model.enable_gradient_checkpointing()  # HF's BERT wraps each layer in nn.remat
  _assert_close(grad_fn(loss_fn)(params, batch, rng), plain, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_shared_projector_on_hf_vit_sends_every_token_and_layernorm_one_signal():
  _, batch, loss_fn, _, _ = _vit()
  shared = dfax.projectors.shared(jax.random.key(3), reuse=True, feature_ndim=1)
  sent = []

  def recording(error, points):
    cotangents = shared(error, points)
    sent.append((error, points, cotangents))
    return cotangents

  # eager, so that the recorded cotangents are arrays, not tracers
  grads = dfax.dfa_grad(loss_fn, projector=recording, feedback=dfax.after(nn.LayerNorm))(
      _params("vit"), batch, jax.random.key(0))
  (error, points, cotangents), = sent
  # HF's ViT: layernorm_before and layernorm_after in each of 2 layers, then the final layernorm
  assert [p.shape for p in points] == [(BATCH, 5, 16)] * 5 and error.shape == (BATCH, 3)
  for cotangent in cotangents:  # feature_ndim=1: one column per feature, shared by the tokens
    np.testing.assert_allclose(cotangent, np.broadcast_to(cotangent[:, :1], cotangent.shape))
  for cotangent in cotangents[1:]:  # reuse: points of one width take the same projection
    np.testing.assert_allclose(cotangent, cotangents[0])
  assert np.any(cotangents[0]) and np.any(grads["vit"]["embeddings"]["patch_embeddings"]
                                          ["projection"]["kernel"])
