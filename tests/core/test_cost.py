"""The cost target, checked on the program (not timed): one forward, local backward."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

import dfax

WIDTH, CLASSES, LAYERS = 64, 10, 4


class MLP(nn.Module):
  @nn.compact
  def __call__(self, x):
    for _ in range(LAYERS):
      x = nn.tanh(nn.Dense(WIDTH)(x))
    return nn.Dense(CLASSES)(x)


def _dots(fn, *args):
  """(lhs shape, rhs shape) of every dot_general in the traced program."""
  jaxpr = jax.make_jaxpr(fn)(*args)
  out = []

  def visit(jpr):
    for eqn in jpr.eqns:
      if eqn.primitive.name == "dot_general":
        out.append(tuple(tuple(v.aval.shape) for v in eqn.invars))
      for p in eqn.params.values():
        if hasattr(p, "jaxpr"):
          visit(p.jaxpr)

  visit(jaxpr.jaxpr)
  return out


def test_dfa_program_has_one_forward_and_no_hidden_backprop():
  model = MLP()
  x = jnp.ones((32, 20))
  y = jnp.zeros((32,), jnp.int32)
  params = model.init(jax.random.key(0), x)
  loss = lambda p: optax.softmax_cross_entropy_with_integer_labels(model.apply(p, x), y).mean()
  bp = _dots(jax.value_and_grad(loss), params)
  dfa = _dots(dfax.dfa_value_and_grad(loss), params)
  layers = LAYERS + 1
  assert dfa[:layers] == bp[:layers]  # one identical forward pass

  def classify(backward):
    kinds = {"weight_grad": 0, "projection": 0, "through_weights": 0}
    for lhs, rhs in backward:
      if rhs[0] == 32:  # contracts over the batch: dW = h^T delta
        kinds["weight_grad"] += 1
      elif lhs == (32, CLASSES) and rhs == (CLASSES, WIDTH):
        kinds["projection"] += 1
      else:  # delta @ W^T: back-propagation through a layer
        kinds["through_weights"] += 1
    return kinds

  assert classify(bp[layers:]) == {"weight_grad": layers, "projection": 0,
                                   "through_weights": LAYERS}
  assert classify(dfa[layers:]) == {"weight_grad": layers, "projection": LAYERS,
                                    "through_weights": 0}
