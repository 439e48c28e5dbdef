"""The hybrid method on a foreign model: HF GPT-2's last blocks by backprop, the rest by DFA.

``dfax.exactly(...)`` in ``feedback=`` names the modules that train by exact
backprop (the last K blocks and the final LayerNorm); the others keep their
DFA cuts (after every LayerNorm). Checked as run_clm_flax.py computes the
loss: the picked modules and the head get ``jax.grad``'s gradients, the rest
get DFA's and no exact gradient leaks into them.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import dfax

transformers = pytest.importorskip("transformers")
from transformers.models.gpt2 import modeling_flax_gpt2 as hf_gpt2  # noqa: E402

pytestmark = pytest.mark.slow  # a third-party model check (README: the fast subset)

VOCAB, TOKENS, BATCH, LAYERS = 40, 12, 4, 4


def _gpt2():
  config = transformers.GPT2Config(n_layer=LAYERS, n_embd=16, n_head=2, vocab_size=VOCAB,
                                   n_positions=TOKENS, resid_pdrop=0.0, embd_pdrop=0.0,
                                   attn_pdrop=0.0)
  model = hf_gpt2.FlaxGPT2LMHeadModel(config, seed=0, _do_init=False)
  params = jax.jit(model.init_weights, static_argnums=1)(jax.random.key(0), (BATCH, TOKENS))
  ids = (jnp.arange(BATCH)[:, None] * 7 + jnp.arange(TOKENS)[None, :]) % VOCAB

  def loss_fn(params):  # run_clm_flax.py's loss
    logits = model(ids, params=params, train=False)[0]
    return optax.softmax_cross_entropy_with_integer_labels(logits[..., :-1, :],
                                                           ids[..., 1:]).mean()

  return params, loss_fn


def _feedback(k):
  tail = [f"transformer/h/{i}" for i in range(LAYERS - k, LAYERS)] + ["transformer/ln_f"]
  return (dfax.after(dfax.is_norm_layer), dfax.exactly(dfax.by_name(*tail)))


def _blocks(grads):
  return grads["transformer"]["h"]


def _close(a, b):
  return all(np.allclose(x, y, rtol=1e-5, atol=1e-7)
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.fixture(scope="module")
def gpt2():
  return _gpt2()


def test_last_blocks_and_head_get_backprop_the_rest_no_leak(gpt2):
  params, loss_fn = gpt2
  bp = jax.grad(loss_fn)(params)
  zero = jax.jit(dfax.dfa_grad(loss_fn, projector=dfax.projectors.zeros(),
                               feedback=_feedback(2)))(params)
  for i in ("2", "3"):
    assert _close(_blocks(zero)[i], _blocks(bp)[i])
  assert _close(zero["transformer"]["ln_f"], bp["transformer"]["ln_f"])
  for i in ("0", "1"):  # zero feedback and no leak: nothing reaches the DFA blocks
    assert all(not np.asarray(a).any() for a in jax.tree.leaves(_blocks(zero)[i]))
  # the position embedding feeds block 0 only (the token embedding is tied to the head)
  assert not np.asarray(zero["transformer"]["wpe"]["embedding"]).any()


def test_the_dfa_blocks_get_their_feedback(gpt2):
  params, loss_fn = gpt2
  bp = jax.grad(loss_fn)(params)
  grads = jax.jit(dfax.dfa_grad(loss_fn, projector=dfax.projectors.gaussian(jax.random.key(1)),
                                feedback=_feedback(2)))(params)
  for i in ("0", "1"):  # every parameter, block 1's MLP too: it feeds only the exact blocks,
    # and learns from the feedback at their input
    assert all(np.asarray(a).any() for a in jax.tree.leaves(_blocks(grads)[i]))
    assert not _close(_blocks(grads)[i], _blocks(bp)[i])
  for i in ("2", "3"):
    assert _close(_blocks(grads)[i], _blocks(bp)[i])
