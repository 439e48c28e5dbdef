"""Norm layers by role on HF models that bring their own norm classes: Llama and T5.

HF's Flax Llama normalises with ``FlaxLlamaRMSNorm`` and T5 with
``FlaxT5LayerNorm``, neither a Flax ``nn.LayerNorm``. ``dfax.after(dfax.is_norm_layer)``
(the ``after_ln`` preset) must find every one of them, one point per norm module
(each one's input depends on the embeddings), and an oracle projector must then
reproduce ``jax.grad`` for every parameter; the head, after the last cut, trains
exactly. T5 runs with equal source and target lengths here (encoder–decoder
points on a different source length are another matter).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import dfax
from dfax.models import presets
from dfax.testing import oracle_projector

transformers = pytest.importorskip("transformers")
from transformers.models.gemma import modeling_flax_gemma as hf_gemma  # noqa: E402
from transformers.models.llama import modeling_flax_llama as hf_llama  # noqa: E402
from transformers.models.mistral import modeling_flax_mistral as hf_mistral  # noqa: E402
from transformers.models.t5 import modeling_flax_t5 as hf_t5  # noqa: E402

VOCAB, TOKENS, BATCH, LAYERS = 40, 12, 4, 2


def _counting_ids():
  return (jnp.arange(BATCH)[:, None] * 7 + jnp.arange(TOKENS)[None, :]) % VOCAB


class _JnpWithClipAMax:
  """``jax.numpy`` whose ``clip`` also takes ``a_min``/``a_max``.

  HF's Flax T5 (transformers 4.57.6, the last release with Flax models) calls
  ``jnp.clip(x, a_max=...)``, which jax 0.10 removed; the T5 tests give HF's
  module this stand-in for its ``jnp`` global (nothing else changes).
  """

  def __getattr__(self, name):
    return getattr(jnp, name)

  @staticmethod
  def clip(x, a_min=None, a_max=None, **kwargs):
    lo, hi = kwargs.pop("min", a_min), kwargs.pop("max", a_max)
    return jnp.clip(x, min=lo, max=hi, **kwargs)


@pytest.fixture
def t5_on_this_jax(monkeypatch):
  try:
    jnp.clip(jnp.zeros(1), a_max=0)
  except TypeError:
    monkeypatch.setattr(hf_t5, "jnp", _JnpWithClipAMax())


def _llama():
  # max_position_embeddings >= 2 * head_dim: HF's Flax rotary table is cut to that many columns
  config = transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=16, intermediate_size=32,
                                    num_hidden_layers=LAYERS, num_attention_heads=2,
                                    num_key_value_heads=2, max_position_embeddings=64)
  model = hf_llama.FlaxLlamaForCausalLM(config, seed=0, _do_init=False)

  def loss_fn(params, batch, dropout_rng):  # run_clm_flax.py's loss
    logits = model(batch["input_ids"], params=params, dropout_rng=dropout_rng, train=True)[0]
    return optax.softmax_cross_entropy_with_integer_labels(
        logits[..., :-1, :], batch["input_ids"][..., 1:]).mean()

  return model, {"input_ids": _counting_ids()}, loss_fn, 2 * LAYERS + 1


def _t5():
  config = transformers.T5Config(vocab_size=VOCAB, d_model=16, d_kv=8, d_ff=32,
                                 num_layers=LAYERS, num_decoder_layers=LAYERS, num_heads=2,
                                 relative_attention_num_buckets=8, dropout_rate=0.1,
                                 decoder_start_token_id=0, tie_word_embeddings=False)
  model = hf_t5.FlaxT5ForConditionalGeneration(config, seed=0, _do_init=False)
  ids = _counting_ids()

  def loss_fn(params, batch, dropout_rng):  # run_summarization_flax.py's loss, no padding
    decoder_ids = hf_t5.shift_tokens_right(batch["labels"], config.pad_token_id,
                                           config.decoder_start_token_id)
    logits = model(batch["input_ids"], decoder_input_ids=decoder_ids, params=params,
                   dropout_rng=dropout_rng, train=True)[0]
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["labels"]).mean()

  # encoder: a norm before self-attention and before the MLP per layer, then a final one;
  # decoder: before self-attention, cross-attention and the MLP, then a final one
  return model, {"input_ids": ids, "labels": (ids + 1) % VOCAB}, loss_fn, 5 * LAYERS + 2


def _norm_param_paths(params):
  """Paths of the modules whose parameter subtree name says norm (their only parameter)."""
  paths = set()
  for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]:
    keys = [k.key for k in path]
    if "norm" in keys[-2].lower():
      paths.add("/".join(keys[:-1]))
  return paths


@pytest.mark.parametrize("name", ["llama", "t5"])
@pytest.mark.slow
def test_norm_layers_by_role_points_and_oracle(name, request):
  if name == "t5":
    request.getfixturevalue("t5_on_this_jax")
  model, batch, loss_fn, num_norms = {"llama": _llama, "t5": _t5}[name]()
  params = jax.jit(model.init_weights, static_argnums=1)(jax.random.key(0), model.input_shape)
  rng = jax.random.key(7)
  feedback = presets.after_ln()  # dfax.after(dfax.is_norm_layer)
  gaussian, seen = dfax.projectors.gaussian(jax.random.key(1)), []

  def recording(error, points):
    seen.append([(p.path, p.shape) for p in points])
    return gaussian(error, points)

  make = lambda p: dfax.dfa_grad(loss_fn, projector=p, feedback=feedback)
  oracle = oracle_projector(make, params, batch, rng)  # eager: records the true cotangents
  with jax.default_matmul_precision("highest"):
    exact, dfa, with_oracle = jax.device_get(jax.jit(
        lambda *a: (jax.grad(loss_fn)(*a), make(recording)(*a), make(oracle)(*a)))(
            params, batch, rng))

  (points,) = seen
  paths = [path for path, _ in points]
  assert len(paths) == num_norms
  assert {p.removesuffix("/out") for p in paths} == _norm_param_paths(params)
  assert all(shape == (BATCH, TOKENS, 16) for _, shape in points)
  dfax.testing.assert_trees_close(dfa["lm_head"], exact["lm_head"], rtol=1e-5, atol=1e-7)
  differs = [not np.allclose(a, b, rtol=1e-3, atol=1e-6)
             for a, b in zip(jax.tree.leaves(dfa), jax.tree.leaves(exact))]
  assert sum(differs) > len(differs) // 2  # the layers did get DFA, not backprop
  dfax.testing.assert_trees_close(with_oracle, exact, rtol=1e-4, atol=1e-6)


def test_hf_norm_classes_are_norm_layers_and_their_blocks_are_not():
  llama, t5 = transformers.LlamaConfig(), transformers.T5Config()
  assert dfax.is_norm_layer(hf_llama.FlaxLlamaRMSNorm(llama))
  assert dfax.is_norm_layer(hf_t5.FlaxT5LayerNorm(t5.d_model))
  assert dfax.is_norm_layer(hf_mistral.FlaxMistralRMSNorm(transformers.MistralConfig()))
  assert dfax.is_norm_layer(hf_gemma.FlaxGemmaRMSNorm(transformers.GemmaConfig()))
  for module in (hf_llama.FlaxLlamaDecoderLayer(llama), hf_llama.FlaxLlamaMLP(llama),
                 hf_t5.FlaxT5LayerFF(t5), hf_t5.FlaxT5Block(t5)):
    assert not dfax.is_norm_layer(module), type(module).__name__
