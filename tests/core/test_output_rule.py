"""Where the error is taken: one top-level call is the output unless the user says otherwise."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dfax
from dfax.models import TransformerConfig, TransformerLM, lm_forward, presets

X = jnp.ones((4, 5))


def _two_models():
  body = nn.Sequential([nn.Dense(8), nn.tanh, nn.Dense(8)])
  head = nn.Sequential([nn.Dense(8), nn.tanh, nn.Dense(3)])
  params = (body.init(jax.random.key(0), X), head.init(jax.random.key(1), jnp.ones((4, 8))))
  return body, head, params


def test_two_top_level_calls_with_points_are_refused_naming_both():
  body, head, params = _two_models()
  loss = lambda p: head.apply(p[1], body.apply(p[0], X)).sum()
  with pytest.raises(ValueError, match=r"2 top-level modules.*Sequential, Sequential.*"
                                       r"dfax.exact.*multiple_outputs=True"):
    dfax.dfa_grad(loss)(params)


def test_multiple_outputs_gives_each_call_its_own_error():
  body, head, params = _two_models()
  loss = lambda p: head.apply(p[1], body.apply(p[0], X)).sum()
  errors = []

  def recording(error, points):
    errors.append(error.shape)
    return dfax.projectors.gaussian(jax.random.key(0))(error, points)

  grads = dfax.dfa_grad(loss, projector=recording, multiple_outputs=True)(params)
  assert sorted(errors) == [(4, 3), (4, 8)]  # the head's logits, the body's output
  assert jax.tree.structure(grads) == jax.tree.structure(params)


def test_exact_call_trains_by_backprop_and_makes_no_output():
  body, head, params = _two_models()

  def loss(p):
    h = body.apply(p[0], X)
    with dfax.exact():
      return head.apply(p[1], h).sum()

  grads = dfax.dfa_grad(loss)(params)
  exact = jax.grad(loss)(params)
  for a, b in zip(jax.tree.leaves(grads[1]), jax.tree.leaves(exact[1])):
    np.testing.assert_allclose(a, b, rtol=1e-6)
  # the body's hidden layer is DFA-trained from dL/dh, not backprop
  assert not np.allclose(grads[0]["params"]["layers_0"]["kernel"],
                         exact[0]["params"]["layers_0"]["kernel"], atol=1e-4)


def test_exact_outside_dfa_grad_changes_nothing():
  body, head, params = _two_models()

  def loss(p):
    with dfax.exact():
      return head.apply(p[1], body.apply(p[0], X)).sum()

  plain = lambda p: head.apply(p[1], body.apply(p[0], X)).sum()
  for a, b in zip(jax.tree.leaves(jax.grad(loss)(params)), jax.tree.leaves(jax.grad(plain)(params))):
    np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_lm_forward_takes_the_error_before_the_head_and_trains_the_head_exactly():
  """error_at="hidden" with cuts after every LayerNorm: the final LayerNorm is in the head's
  exact call, so it is no point, and the head and it get jax.grad's gradients."""
  model = TransformerLM(TransformerConfig(vocab_size=16, d_model=16, num_heads=2,
                                          num_layers=2, d_ff=32, max_len=8))
  tokens = jax.random.randint(jax.random.key(0), (2, 8), 0, 16)
  params = model.init(jax.random.key(1), tokens)
  loss = lambda p: lm_forward(model, p, tokens).mean()
  paths = []

  def recording(error, points):
    paths.extend(p.path for p in points)
    assert error.shape == (2, 8, 16)  # dL/dh, d_model wide (here equal to the vocabulary)
    return dfax.projectors.gaussian(jax.random.key(0))(error, points)

  grads = dfax.dfa_grad(loss, projector=recording, feedback=presets.after_ln())(params)
  bp = jax.grad(loss)(params)
  assert paths and not any(p.startswith("ln_final") for p in paths)
  for name in ("head", "ln_final"):
    for a, b in zip(jax.tree.leaves(grads["params"][name]), jax.tree.leaves(bp["params"][name])):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
