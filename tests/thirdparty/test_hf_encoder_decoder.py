"""Encoder–decoders from HF: Flax T5 and BART, source length != target length.

Called as HF's seq2seq scripts call them (``model(input_ids=..., attention_mask=...,
decoder_input_ids=..., params=..., train=False)``), with the documented recipe
``dfax.encoder_decoder(dfax.after(dfax.is_norm_layer))``: the encoder's norm
outputs are pooled points on the source tokens, the decoder's are per target
token. The oracle reproduces ``jax.grad``; the default projector and the zero
control run; and at equal lengths the encoder never gets target token ``i``'s
error at its token ``i``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import dfax
from dfax.testing import oracle_projector

transformers = pytest.importorskip("transformers")
from transformers.models.bart import modeling_flax_bart as hf_bart  # noqa: E402
from transformers.models.t5 import modeling_flax_t5 as hf_t5  # noqa: E402

VOCAB, SOURCE, TARGET, BATCH, LAYERS, WIDTH = 40, 12, 8, 4, 2, 16
RECIPE = dfax.encoder_decoder(dfax.after(dfax.is_norm_layer))


class _JnpWithClipAMax:
  """``jax.numpy`` whose ``clip`` also takes ``a_min``/``a_max`` (HF T5 on jax >= 0.10)."""

  def __getattr__(self, name):
    return getattr(jnp, name)

  @staticmethod
  def clip(x, a_min=None, a_max=None, **kwargs):
    lo, hi = kwargs.pop("min", a_min), kwargs.pop("max", a_max)
    return jnp.clip(x, min=lo, max=hi, **kwargs)


@pytest.fixture(params=["t5", "bart"])
def seq2seq(request, monkeypatch):
  """(model, params, norm points in encoder, in decoder) for a tiny T5 or BART."""
  if request.param == "t5":
    try:
      jnp.clip(jnp.zeros(1), a_max=0)
    except TypeError:
      monkeypatch.setattr(hf_t5, "jnp", _JnpWithClipAMax())
    config = transformers.T5Config(vocab_size=VOCAB, d_model=WIDTH, d_kv=8, d_ff=32,
                                   num_layers=LAYERS, num_decoder_layers=LAYERS, num_heads=2,
                                   relative_attention_num_buckets=8, decoder_start_token_id=0,
                                   tie_word_embeddings=False)
    model = hf_t5.FlaxT5ForConditionalGeneration(config, seed=0, _do_init=False)
    counts = (2 * LAYERS + 1, 3 * LAYERS + 1)  # pre-LN: two/three per layer, one final
  else:
    config = transformers.BartConfig(vocab_size=VOCAB, d_model=WIDTH, encoder_layers=LAYERS,
                                     decoder_layers=LAYERS, encoder_attention_heads=2,
                                     decoder_attention_heads=2, encoder_ffn_dim=32,
                                     decoder_ffn_dim=32, max_position_embeddings=32)
    model = hf_bart.FlaxBartForConditionalGeneration(config, seed=0, _do_init=False)
    counts = (2 * LAYERS + 1, 3 * LAYERS + 1)  # post-LN: embedding LN, two/three per layer
  params = jax.jit(model.init_weights, static_argnums=1)(jax.random.key(0), (1, 4))
  return model, params, counts


def _batch(source=SOURCE, target=TARGET):
  src = jax.random.randint(jax.random.key(1), (BATCH, source), 3, VOCAB)
  tgt = jax.random.randint(jax.random.key(2), (BATCH, target), 3, VOCAB)
  return {"input_ids": src, "attention_mask": jnp.ones_like(src), "decoder_input_ids": tgt,
          "labels": jnp.roll(tgt, -1, axis=1)}


def _loss_fn(model):
  def loss_fn(params, batch):  # run_summarization_flax.py's call, no padding
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   decoder_input_ids=batch["decoder_input_ids"], params=params,
                   train=False)[0]
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["labels"]).mean()

  return loss_fn


def _side(path):
  keys = [str(getattr(k, "key", k)) for k in path]
  return "encoder" if "encoder" in keys else "decoder" if "decoder" in keys else "other"


@pytest.mark.slow
def test_oracle_reproduces_backprop_with_pooled_encoder_points(seq2seq):
  model, params, (n_enc, n_dec) = seq2seq
  loss_fn, batch, seen = _loss_fn(model), _batch(), []
  gaussian = dfax.projectors.gaussian(jax.random.key(0))

  def recording(error, points):
    seen.append((error.shape, [(p.path, p.shape, p.pooled) for p in points]))
    return gaussian(error, points)

  make = lambda p: dfax.dfa_grad(loss_fn, projector=p, feedback=RECIPE)
  oracle = oracle_projector(make, params, batch)
  with jax.default_matmul_precision("highest"):
    exact, with_oracle, _ = jax.jit(
        lambda *a: (jax.grad(loss_fn)(*a), make(oracle)(*a), make(recording)(*a)))(
            params, batch)
  ((error_shape, points),) = seen
  assert error_shape == (BATCH, TARGET, VOCAB)
  enc = [(s, k) for path, s, k in points if "encoder" in path.split("/")]
  dec = [(s, k) for path, s, k in points if "decoder" in path.split("/")]
  assert enc == [((BATCH, SOURCE, WIDTH), 1)] * n_enc
  assert dec == [((BATCH, TARGET, WIDTH), 0)] * n_dec
  dfax.testing.assert_trees_close(with_oracle, exact, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("control", [False, True])
@pytest.mark.slow
def test_default_projector_and_zero_control_run_with_encoder_points(seq2seq, control):
  model, params, _ = seq2seq
  loss_fn, batch = _loss_fn(model), _batch()
  projector = dfax.projectors.zeros() if control else None  # None: the default projector
  grads = jax.jit(dfax.dfa_grad(loss_fn, projector=projector, feedback=RECIPE))(params, batch)
  exact = jax.jit(jax.grad(loss_fn))(params, batch)
  leaves = jax.tree_util.tree_flatten_with_path(grads)[0]
  assert all(bool(jnp.all(jnp.isfinite(g))) for _, g in leaves)
  norm = lambda side: sum(float(jnp.sum(g ** 2)) for p, g in leaves if _side(p) == side)
  head = [k for k in ("lm_head", "final_logits_bias") if k in grads]
  for k in head:  # after the last cut: the true gradient, with or without feedback
    dfax.testing.assert_trees_close(grads[k], exact[k], rtol=1e-4, atol=1e-7)
  if control:  # only the head learns
    assert norm("encoder") == 0 and norm("decoder") == 0
  else:  # the encoder learns from the pooled feedback
    assert norm("encoder") > 0 and norm("decoder") > 0


def _encoder_grads(loss_fn, params, batch, feedback, permute):
  """Encoder grads under the default projector, fed the error with its target tokens permuted."""
  base = dfax.projectors.gaussian(jax.random.key(0))
  perm = jnp.array([3, 0, 7, 5, 1, 6, 2, 4])[:batch["labels"].shape[1]]
  projector = (lambda e, pts: base(e[:, perm], pts)) if permute else base
  grads = dfax.dfa_grad(loss_fn, projector=projector, feedback=feedback)(params, batch)
  leaves = jax.tree_util.tree_flatten_with_path(grads)[0]
  return [g for p, g in leaves if _side(p) == "encoder"]


@pytest.mark.slow
def test_equal_lengths_pool_the_encoder_instead_of_pairing_tokens(seq2seq):
  model, params, _ = seq2seq
  loss_fn, batch = _loss_fn(model), _batch(source=TARGET, target=TARGET)
  with jax.default_matmul_precision("highest"):
    get = jax.jit(_encoder_grads, static_argnums=(0, 3, 4))
    recipe = [get(loss_fn, params, batch, RECIPE, permute) for permute in (False, True)]
    naive = [get(loss_fn, params, batch, dfax.after(dfax.is_norm_layer), permute)
             for permute in (False, True)]
  # the recipe: the encoder sees only the target-averaged error, whatever its order
  for a, b in zip(*recipe):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-8)
  # what the recipe prevents: without it, lengths being equal, tokens were paired
  assert any(not np.allclose(a, b, rtol=1e-2, atol=1e-8) for a, b in zip(*naive))
