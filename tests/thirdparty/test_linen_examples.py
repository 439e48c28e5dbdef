"""Linen models in the style of Flax's own examples, trained as those examples train them.

A ResNet with BatchNorm (examples/imagenet: ``mutable=['batch_stats']``,
``has_aux``), an lm1b-style decoder with dropout (``rngs={'dropout': ...}``),
and a stack of ``nn.remat`` blocks under ``nn.scan``. For each: jit, the exact
tail, the oracle projector reproducing ``jax.grad`` for every parameter, and a
few Adam steps that lower the loss.

Kept cheap on two cores: only the oracle's recording pass runs eagerly (it
must); the exact, Gaussian-DFA and oracle-DFA gradients come from one compile.
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


class ResNetBlock(nn.Module):
  """examples/imagenet/models.py's ResNetBlock."""

  filters: int
  conv: nn.Module
  norm: nn.Module
  strides: tuple = (1, 1)

  @nn.compact
  def __call__(self, x):
    residual = x
    y = self.conv(self.filters, (3, 3), self.strides)(x)
    y = nn.relu(self.norm()(y))
    y = self.conv(self.filters, (3, 3))(y)
    y = self.norm(scale_init=nn.initializers.zeros_init())(y)
    if residual.shape != y.shape:
      residual = self.norm(name="norm_proj")(
          self.conv(self.filters, (1, 1), self.strides, name="conv_proj")(residual))
    return nn.relu(residual + y)


class ResNet(nn.Module):
  num_classes: int = 5
  train: bool = True

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(nn.Conv, use_bias=False)
    norm = functools.partial(nn.BatchNorm, use_running_average=not self.train, momentum=0.9)
    x = nn.relu(norm(name="bn_init")(conv(8, (3, 3), name="conv_init")(x)))
    for i, strides in enumerate([(1, 1), (2, 2)]):
      x = ResNetBlock(8 * (i + 1), conv=conv, norm=norm, strides=strides)(x)
    return nn.Dense(self.num_classes)(jnp.mean(x, axis=(1, 2)))


class DecoderLayer(nn.Module):
  """examples/lm1b's DecoderLayer (pre-LN, dropout), small."""

  @nn.compact
  def __call__(self, x, deterministic):
    y = nn.LayerNorm()(x)
    y = nn.SelfAttention(num_heads=2, qkv_features=16, dropout_rate=0.1,
                         deterministic=deterministic)(y, mask=nn.make_causal_mask(x[..., 0]))
    x = x + nn.Dropout(0.1)(y, deterministic=deterministic)
    y = nn.Dense(32)(nn.LayerNorm()(x))
    y = nn.Dense(16)(nn.gelu(y))
    return x + nn.Dropout(0.1)(y, deterministic=deterministic)


class Decoder(nn.Module):
  vocab: int = 20

  @nn.compact
  def __call__(self, ids, train=True):
    x = nn.Embed(self.vocab, 16)(ids)
    for i in range(2):
      x = DecoderLayer(name=f"layer_{i}")(x, deterministic=not train)
    return nn.Dense(self.vocab)(nn.LayerNorm()(x))


class RematBlock(nn.Module):
  @nn.compact
  def __call__(self, h, _):
    return h + nn.Dense(12)(nn.tanh(nn.Dense(24)(nn.LayerNorm()(h)))), None


class ScanRemat(nn.Module):
  @nn.compact
  def __call__(self, x):
    stack = nn.scan(nn.remat(RematBlock), variable_axes={"params": 0},
                    split_rngs={"params": True}, length=3)
    h, _ = stack(name="blocks")(nn.Dense(12)(x), None)
    return nn.Dense(4)(h)


def _resnet():
  model = ResNet()
  labels = jnp.arange(8) % 5
  x = jax.random.normal(jax.random.key(0), (5, 8, 8, 3))[labels] + 0.3 * jax.random.normal(
      jax.random.key(1), (8, 8, 8, 3))
  variables = model.init(jax.random.key(2), x)

  def loss_fn(params, batch_stats):  # examples/imagenet/train.py's loss_fn
    logits, new_state = model.apply({"params": params, "batch_stats": batch_stats}, x,
                                    mutable=["batch_stats"])
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    return loss, new_state

  return loss_fn, (variables["params"], variables["batch_stats"]), True, ResNetBlock, "Dense_0"


def _decoder():
  model = Decoder()
  ids = (jnp.arange(4)[:, None] * 3 + jnp.arange(10)[None, :]) % 20
  params = model.init(jax.random.key(0), ids, train=False)["params"]
  rng = jax.random.key(5)

  def loss_fn(params):  # examples/lm1b/train.py: dropout rngs passed to apply
    logits = model.apply({"params": params}, ids[:, :-1], rngs={"dropout": rng})
    return optax.softmax_cross_entropy_with_integer_labels(logits, ids[:, 1:]).mean()

  return loss_fn, (params,), False, DecoderLayer, "Dense_0"


def _scan_remat():
  model = ScanRemat()
  x = jax.random.normal(jax.random.key(0), (6, 5))
  y = jnp.tanh(x @ jax.random.normal(jax.random.key(1), (5, 4)))
  params = model.init(jax.random.key(2), x)["params"]
  loss_fn = lambda p: jnp.mean((model.apply({"params": p}, x) - y) ** 2)
  return loss_fn, (params,), False, RematBlock, "Dense_1"


MODELS = {"resnet_batchnorm": _resnet, "lm1b_dropout": _decoder, "scan_remat": _scan_remat}


def _assert_close(actual, expected, rtol=1e-5, atol=1e-6):
  """``dfax.testing.assert_trees_close`` on host arrays (no eager device ops to compile)."""
  actual, expected = jax.device_get((actual, expected))
  assert jax.tree.structure(actual) == jax.tree.structure(expected)
  for (path, a), e in zip(jax.tree_util.tree_flatten_with_path(actual)[0],
                          jax.tree.leaves(expected)):
    np.testing.assert_allclose(a, e, rtol=rtol, atol=atol, err_msg=jax.tree_util.keystr(path))


# Each model once, both cut sides covered.
@pytest.mark.parametrize("name,after", [("resnet_batchnorm", True), ("lm1b_dropout", False),
                                        ("scan_remat", True)])
@pytest.mark.slow
def test_linen_example_oracle_and_exact_tail(name, after):
  loss_fn, args, has_aux, block, head = MODELS[name]()
  feedback = dfax.after(block) if after else block
  make_for = lambda f: lambda p: dfax.dfa_grad(f, projector=p, feedback=feedback,
                                               has_aux=has_aux)
  oracle = oracle_projector(make_for(loss_fn), *args)  # the true cotangents
  gaussian = make_for(loss_fn)(dfax.projectors.gaussian(jax.random.key(3)))
  exact, dfa, with_oracle = jax.device_get(jax.jit(lambda *a: (
      jax.grad(loss_fn, has_aux=has_aux)(*a), gaussian(*a), make_for(loss_fn)(oracle)(*a)))(
          *args))
  if has_aux:
    (exact, exact_state), (dfa, dfa_state), (with_oracle, _) = exact, dfa, with_oracle
    _assert_close(dfa_state, exact_state)  # BatchNorm statistics as with backprop
  _assert_close(dfa[head], exact[head])
  differs = [not np.allclose(a, b, rtol=1e-3, atol=1e-6)
             for a, b in zip(jax.tree.leaves(dfa), jax.tree.leaves(exact))]
  assert any(differs)  # some segments got DFA, not backprop
  _assert_close(with_oracle, exact, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.slow
def test_linen_example_trains_with_adam(name):
  loss_fn, args, has_aux, block, _ = MODELS[name]()
  grad_fn = dfax.dfa_value_and_grad(loss_fn, has_aux=has_aux, feedback=dfax.after(block))
  optimizer = optax.adam(1e-2)
  params, opt_state, losses = args[0], optax.adam(1e-2).init(args[0]), []
  rest = args[1:]

  @jax.jit
  def step(params, opt_state, *rest):
    value, grads = grad_fn(params, *rest)
    loss, rest = (value[0], (value[1]["batch_stats"],)) if has_aux else (value, rest)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss, rest

  for _ in range(20):
    params, opt_state, loss, rest = step(params, opt_state, *rest)
    losses.append(float(loss))
  assert losses[-1] < 0.9 * losses[0], losses
