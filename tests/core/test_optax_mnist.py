"""An optax loop on real MNIST: DFA's test accuracy rises (offline copy in ../shared/data)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

import dfax
from dfax.data import load_mnist
from dfax.models import MLP


def test_dfa_optax_loop_learns_mnist(shared_data):
  data = load_mnist(shared_data / "mnist", source="local")
  x_train, y_train = data.x_train[:8000], data.y_train[:8000]
  x_test, y_test = jnp.asarray(data.x_test[:2000]), jnp.asarray(data.y_test[:2000])
  model = MLP(features=(128, 128), num_classes=10, activation="tanh")
  params = model.init(jax.random.key(0), x_train[:1])
  opt = optax.adam(1e-3)
  opt_state = opt.init(params)

  def loss_fn(p, x, y):
    return optax.softmax_cross_entropy_with_integer_labels(model.apply(p, x), y).mean()

  @jax.jit
  def step(p, s, x, y):
    g = dfax.dfa_grad(loss_fn)(p, x, y)
    u, s = opt.update(g, s, p)
    return optax.apply_updates(p, u), s

  accuracy = jax.jit(lambda p: (model.apply(p, x_test).argmax(-1) == y_test).mean())
  before = float(accuracy(params))
  rng = np.random.default_rng(0)
  for _ in range(4):
    for xb, yb in dfax.data.iterate_batches(x_train, y_train, 100, rng=rng):
      params, opt_state = step(params, opt_state, xb, yb)
  after = float(accuracy(params))
  assert before < 0.3
  assert after > 0.88, after
