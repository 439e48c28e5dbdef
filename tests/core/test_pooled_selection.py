"""dfax.pooled / dfax.encoder_decoder: which points are pooled, and what goes wrong without.

A hand-written linen encoder–decoder (no transformers needed): the encoder
runs on (batch, source, d), the decoder on (batch, target, d) and reads the
encoder's mean over source tokens.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

import dfax

BATCH, SOURCE, TARGET, D, VOCAB = 3, 7, 5, 8, 11


class Encoder(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = nn.tanh(nn.Dense(D)(x))
    return nn.LayerNorm()(nn.tanh(nn.Dense(D)(x)) + x)


class Decoder(nn.Module):
  @nn.compact
  def __call__(self, y, memory):
    y = nn.tanh(nn.Dense(D)(y)) + memory.mean(axis=1, keepdims=True)
    y = nn.LayerNorm()(nn.tanh(nn.Dense(D)(y)) + y)
    return nn.Dense(VOCAB)(y)


class Seq2Seq(nn.Module):
  @nn.compact
  def __call__(self, src, tgt):
    return Decoder(name="decoder")(tgt, Encoder(name="encoder")(src))


def _setup(source=SOURCE):
  model = Seq2Seq()
  src = jax.random.normal(jax.random.key(0), (BATCH, source, D))
  tgt = jax.random.normal(jax.random.key(1), (BATCH, TARGET, D))
  labels = jax.random.randint(jax.random.key(2), (BATCH, TARGET), 0, VOCAB)
  params = model.init(jax.random.key(3), src, tgt)

  def loss_fn(params):
    logits = model.apply(params, src, tgt)
    return -jnp.take_along_axis(jax.nn.log_softmax(logits), labels[..., None], -1).mean()

  return params, loss_fn


def _recorded(loss_fn, params, feedback):
  seen = []

  def recording(error, points):
    seen.append({p.path: (p.shape, p.pooled) for p in points})
    return dfax.projectors.gaussian(jax.random.key(0))(error, points)

  jax.eval_shape(dfax.dfa_grad(loss_fn, projector=recording, feedback=feedback), params)
  return seen[0]


@pytest.mark.slow
def test_encoder_decoder_pools_exactly_the_encoder_points_and_the_oracle_holds():
  params, loss_fn = _setup()
  feedback = dfax.encoder_decoder(dfax.after(dfax.is_norm_layer))
  assert _recorded(loss_fn, params, feedback) == {
      "encoder/LayerNorm_0/out": ((BATCH, SOURCE, D), 1),
      "decoder/LayerNorm_0/out": ((BATCH, TARGET, D), 0)}
  make = lambda p: dfax.dfa_grad(loss_fn, projector=p, feedback=feedback)
  oracle = dfax.testing.oracle_projector(make, params)
  with jax.default_matmul_precision("highest"):
    dfax.testing.assert_trees_close(make(oracle)(params), jax.grad(loss_fn)(params))


@pytest.mark.slow
def test_encoder_by_predicate_and_pooled_by_hand_mean_the_same():
  params, loss_fn = _setup()
  by_pred = dfax.encoder_decoder(nn.Dense, encoder=lambda m, p: p[:1] == ("encoder",))
  by_hand = (dfax.pooled(dfax.by_name("encoder/Dense_*")), dfax.by_name("decoder/Dense_*"))
  first, second = _recorded(loss_fn, params, by_pred), _recorded(loss_fn, params, by_hand)
  assert first == second
  assert {k: v[1] for k, v in first.items()} == {
      "encoder/Dense_1/in": 1, "decoder/Dense_1/in": 0, "decoder/Dense_2/in": 0}
  # the first Dense of each side reads the raw input: no point


def test_unmarked_encoder_points_are_refused_naming_the_fix():
  params, loss_fn = _setup()
  with pytest.raises(ValueError, match=r"dfax.encoder_decoder\(...\)"):
    jax.eval_shape(dfax.dfa_grad(loss_fn, feedback=dfax.after(dfax.is_norm_layer)), params)


def test_a_value_cut_by_a_pooled_and_a_plain_entry_is_pooled():
  params, loss_fn = _setup()
  # two entries select the encoder's LayerNorm, one of them pooled: its point is pooled
  feedback = (dfax.pooled(dfax.after(dfax.by_name("encoder/LayerNorm_0"))),
              dfax.after(dfax.by_name("encoder/LayerNorm_0")), dfax.after(dfax.by_name(
                  "decoder/LayerNorm_0")))
  assert _recorded(loss_fn, params, feedback)["encoder/LayerNorm_0/out"][1] == 1


def test_encoder_decoder_on_a_decoder_only_model_pools_nothing():
  model = nn.Sequential([nn.Dense(D), nn.tanh, nn.LayerNorm(), nn.Dense(VOCAB)])
  x = jnp.ones((BATCH, TARGET, D))
  params = model.init(jax.random.key(0), x)
  loss_fn = lambda p: model.apply(p, x).sum()
  plain = _recorded(loss_fn, params, dfax.after(dfax.is_norm_layer))
  assert plain == _recorded(loss_fn, params, dfax.encoder_decoder(dfax.after(dfax.is_norm_layer)))
  assert plain == {"layers_2/out": ((BATCH, TARGET, D), 0)}


def test_bad_arguments_are_refused():
  with pytest.raises(ValueError, match="token_ndim"):
    dfax.pooled(nn.Dense, token_ndim=0)
  with pytest.raises(TypeError, match="once"):
    dfax.pooled(dfax.pooled(nn.Dense))
  with pytest.raises(TypeError, match="encoder="):
    dfax.encoder_decoder(nn.Dense, encoder=3)
