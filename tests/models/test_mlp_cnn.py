"""The plain MLP and CNN models.

Shapes and sizes come from ``jax.eval_shape`` (no compilation); each numeric
check runs as one jitted function, to keep the suite fast on a small CPU.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dfax.models import ACTIVATIONS, CNN, MLP, get_activation


def _shapes(model, x_shape):
  return jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct(x_shape, jnp.float32))


def _count(params):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))


@pytest.mark.parametrize("features, expected", [
    ((800, 800), 784 * 800 + 800 + 800 * 800 + 800 + 800 * 10 + 10),  # 1,276,810
    ((240,) * 7, 784 * 240 + 240 + 6 * (240 * 240 + 240) + 240 * 10 + 10),  # 537,850
])
def test_mlp_nokland_sizes(features, expected):
  model = MLP(features=features, num_classes=10)
  params = _shapes(model, (1, 28, 28, 1))
  assert _count(params) == expected
  assert list(params["params"]) == [f"Dense_{i}" for i in range(len(features) + 1)]
  assert params["params"]["Dense_0"]["kernel"].shape == (784, features[0])
  out = jax.eval_shape(model.apply, params, jax.ShapeDtypeStruct((7, 28, 28, 1), jnp.float32))
  assert out.shape == (7, 10)


@pytest.mark.parametrize("activation", ["tanh", "relu", "gelu"])
def test_mlp_activations(activation):
  model = MLP(features=(16, 8), num_classes=3, activation=activation)
  act = get_activation(activation)

  @jax.jit
  def run(key, x):
    params = model.init(key, x)
    p = params["params"]
    h = act(x.reshape(x.shape[0], -1) @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"])
    h = act(h @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"])
    return model.apply(params, x), h @ p["Dense_2"]["kernel"] + p["Dense_2"]["bias"]

  x = np.random.default_rng(0).normal(size=(5, 4, 3)).astype(np.float32)  # flattened to 12
  logits, by_hand = run(jax.random.key(0), x)
  assert logits.shape == (5, 3) and bool(jnp.all(jnp.isfinite(logits)))
  np.testing.assert_allclose(logits, by_hand, rtol=1e-5, atol=1e-5)  # activation after each hidden


def test_unknown_activation_lists_valid_names():
  model = MLP(features=(4,), num_classes=2, activation="swishy")
  with pytest.raises(ValueError, match="unknown activation 'swishy'") as info:
    _shapes(model, (1, 3))
  for name in ("tanh", "relu", "gelu"):
    assert name in str(info.value)
  with pytest.raises(ValueError, match="valid names"):
    get_activation("Tanh")
  assert {"tanh", "relu", "gelu"} <= set(ACTIVATIONS)


def test_cnn_shapes_and_size():
  model = CNN(num_classes=10)
  params = _shapes(model, (1, 28, 28, 1))
  assert list(params["params"]) == ["Conv_0", "Conv_1", "Dense_0", "Dense_1"]
  assert params["params"]["Conv_0"]["kernel"].shape == (5, 5, 1, 32)
  assert params["params"]["Dense_0"]["kernel"].shape == (7 * 7 * 64, 256)
  assert _count(params) == (5 * 5 * 1 * 32 + 32) + (5 * 5 * 32 * 64 + 64) + (3136 * 256 + 256) + (
      256 * 10 + 10) == 857738


def test_cnn_runs():
  model = CNN(num_classes=10)
  x = np.random.default_rng(0).uniform(size=(3, 28, 28, 1)).astype(np.float32)
  logits = jax.jit(lambda k, x: model.apply(model.init(k, x), x))(jax.random.key(0), x)
  assert logits.shape == (3, 10) and bool(jnp.all(jnp.isfinite(logits)))


def test_cnn_options():
  model = CNN(num_classes=4, features=(8,), dense=(), activation="tanh", pool="avg")
  params = _shapes(model, (2, 28, 28))  # channel axis added
  assert list(params["params"]) == ["Conv_0", "Dense_0"]
  assert params["params"]["Dense_0"]["kernel"].shape == (14 * 14 * 8, 4)
  with pytest.raises(ValueError, match="unknown pool"):
    _shapes(CNN(num_classes=2, pool="median"), (2, 28, 28, 1))
