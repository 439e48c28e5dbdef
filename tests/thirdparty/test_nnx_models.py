"""NNX models written as Flax's own NNX guides and tutorials write them.

The MNIST tutorial's CNN (Conv, BatchNorm, Dropout holding its rngs,
``nnx.Optimizer``, an ``nnx.jit`` train step), Dropout with rngs passed in,
``nnx.List``/``nnx.Dict``/``nnx.Sequential``, the "scan over layers" guide's
``nnx.vmap``-built stack run by ``nnx.scan``, and ``nnx.remat``. For each:
the tail is exactly ``nnx.grad``'s, an oracle projector reproduces
``nnx.grad`` for every parameter, state updates equal ``nnx.value_and_grad``'s,
and a few Adam steps lower the loss.
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import dfax
import dfax.nnx
from dfax.testing import assert_trees_close, oracle_projector


class CNN(nnx.Module):
  """Flax's NNX MNIST tutorial CNN (Conv, BatchNorm, Dropout), narrower, on 16x16 images.

  DFA needs some width: with a 16-unit hidden layer this net does not learn
  from random feedback in a few dozen steps; with 128 it does.
  """

  def __init__(self, *, rngs: nnx.Rngs):
    self.conv1 = nnx.Conv(1, 16, kernel_size=(3, 3), rngs=rngs)
    self.batch_norm1 = nnx.BatchNorm(16, rngs=rngs)
    self.dropout1 = nnx.Dropout(rate=0.1, rngs=rngs)
    self.conv2 = nnx.Conv(16, 16, kernel_size=(3, 3), rngs=rngs)
    self.batch_norm2 = nnx.BatchNorm(16, rngs=rngs)
    self.avg_pool = partial(nnx.avg_pool, window_shape=(2, 2), strides=(2, 2))
    self.linear1 = nnx.Linear(16 * 4 * 4, 128, rngs=rngs)
    self.dropout2 = nnx.Dropout(rate=0.1, rngs=rngs)
    self.linear2 = nnx.Linear(128, 10, rngs=rngs)

  def __call__(self, x, rngs: nnx.Rngs | None = None):
    x = self.avg_pool(nnx.relu(self.batch_norm1(self.dropout1(self.conv1(x), rngs=rngs))))
    x = self.avg_pool(nnx.relu(self.batch_norm2(self.conv2(x))))
    x = x.reshape(x.shape[0], -1)
    x = self.dropout2(nnx.relu(self.linear1(x)), rngs=rngs)
    return self.linear2(x)


def _batch(n=16, size=16):
  """Images made from their label's pattern plus noise: a learnable task."""
  labels = jnp.arange(n) % 10
  patterns = jax.random.normal(jax.random.key(1), (10, size, size, 1))
  noise = 0.3 * jax.random.normal(jax.random.key(2), (n, size, size, 1))
  return {"image": patterns[labels] + noise, "label": labels}


def loss_fn(model, batch):
  logits = model(batch["image"])
  loss = optax.softmax_cross_entropy_with_integer_labels(logits=logits, labels=batch["label"])
  return loss.mean(), logits


def plain_loss(model, batch):
  return loss_fn(model, batch)[0]


@pytest.mark.slow
def test_mnist_tutorial_train_step_is_a_one_word_change_and_trains():
  model = CNN(rngs=nnx.Rngs(0))
  optimizer = nnx.Optimizer(model, optax.adamw(1e-3), wrt=nnx.Param)
  metrics = nnx.MultiMetric(accuracy=nnx.metrics.Accuracy(), loss=nnx.metrics.Average("loss"))

  @nnx.jit
  def train_step(model, optimizer, metrics, batch):
    grad_fn = dfax.nnx.dfa_value_and_grad(loss_fn, has_aux=True)  # was nnx.value_and_grad
    (loss, logits), grads = grad_fn(model, batch)
    metrics.update(loss=loss, logits=logits, labels=batch["label"])
    optimizer.update(model, grads)

  batch, losses = _batch(32), []
  mean_before = np.array(model.batch_norm1.mean[...])
  for _ in range(40):
    train_step(model, optimizer, metrics, batch)
    losses.append(float(metrics.compute()["loss"]))
    metrics.reset()
  assert losses[-1] < 0.75 * losses[0], losses
  assert not np.allclose(model.batch_norm1.mean[...], mean_before)  # stats were updated


@pytest.mark.slow
def test_state_updates_equal_nnx_value_and_grad_and_tail_is_exact():
  reference, model = CNN(rngs=nnx.Rngs(0)), CNN(rngs=nnx.Rngs(0))
  batch = _batch()
  (_, _), bp = nnx.value_and_grad(loss_fn, has_aux=True)(reference, batch)
  (_, _), dfa = dfax.nnx.dfa_value_and_grad(loss_fn, has_aux=True)(model, batch)
  for name in ("batch_norm1", "batch_norm2"):
    for stat in ("mean", "var"):
      np.testing.assert_array_equal(getattr(getattr(model, name), stat)[...],
                                    getattr(getattr(reference, name), stat)[...])
  np.testing.assert_array_equal(model.dropout1.rngs.count[...],
                                reference.dropout1.rngs.count[...])
  np.testing.assert_allclose(dfa["linear2"]["kernel"][...], bp["linear2"]["kernel"][...],
                             rtol=1e-5, atol=1e-7)
  assert not np.allclose(dfa["conv1"]["kernel"][...], bp["conv1"]["kernel"][...])
  assert type(model.conv1) is nnx.Conv  # the caller's objects keep their classes


@pytest.mark.slow
def test_oracle_reproduces_nnx_grad_on_the_cnn():
  model, reference = CNN(rngs=nnx.Rngs(0)), CNN(rngs=nnx.Rngs(0))
  model.eval()
  reference.eval()
  batch = _batch()
  make = lambda p: dfax.nnx.dfa_grad(plain_loss, projector=p)
  grads = make(oracle_projector(make, model, batch))(model, batch)
  assert_trees_close(grads, nnx.grad(plain_loss)(reference, batch), rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_dropout_with_rngs_passed_in():
  model, reference = CNN(rngs=nnx.Rngs(0)), CNN(rngs=nnx.Rngs(0))
  batch = _batch()
  loss = lambda m, b, rngs: optax.softmax_cross_entropy_with_integer_labels(
      m(b["image"], rngs=rngs), b["label"]).mean()
  rngs, ref_rngs = nnx.Rngs(dropout=5), nnx.Rngs(dropout=5)
  g = nnx.jit(dfax.nnx.dfa_grad(loss))(model, batch, rngs)
  b = nnx.jit(nnx.grad(loss))(reference, batch, ref_rngs)
  assert rngs.dropout.count[...] == ref_rngs.dropout.count[...] > 0  # both advanced alike
  np.testing.assert_allclose(g["linear2"]["kernel"][...], b["linear2"]["kernel"][...],
                             rtol=1e-5, atol=1e-7)


class Containers(nnx.Module):
  def __init__(self, rngs):
    self.layers = nnx.List([nnx.Linear(6, 8, rngs=rngs), nnx.Linear(8, 8, rngs=rngs)])
    self.branches = nnx.Dict({"a": nnx.Linear(8, 8, rngs=rngs)})
    self.head = nnx.Sequential(nnx.Linear(8, 8, rngs=rngs), nnx.tanh,
                               nnx.Linear(8, 3, rngs=rngs))

  def __call__(self, x):
    for layer in self.layers:
      x = jnp.tanh(layer(x))
    return self.head(jnp.tanh(self.branches["a"](x)))


def test_list_dict_sequential_points_and_oracle():
  model = Containers(nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(3), (5, 6))
  loss = lambda m, x: (m(x) ** 2).mean()
  seen = []

  def recording(error, points):
    seen.extend(p.path for p in points)
    return [jnp.zeros(p.shape, p.dtype) for p in points]

  dfax.nnx.dfa_grad(loss, projector=recording)(model, x)
  assert seen == ["layers/1/in", "branches/a/in", "head/layers/0/in", "head/layers/2/in"]
  make = lambda p: dfax.nnx.dfa_grad(loss, projector=p)
  grads = make(oracle_projector(make, model, x))(model, x)
  assert_trees_close(grads, nnx.grad(loss)(model, x))


class Layer(nnx.Module):
  def __init__(self, rngs):
    self.linear = nnx.Linear(8, 8, rngs=rngs)

  def __call__(self, x):
    return jnp.tanh(self.linear(x))


class ScanStack(nnx.Module):
  """Flax's NNX "scan over layers" guide: nnx.vmap to build, nnx.scan to run."""

  def __init__(self, rngs, remat=False):
    @nnx.split_rngs(splits=3)
    @nnx.vmap(in_axes=(0,), out_axes=0)
    def create_layer(rngs):
      return Layer(rngs)

    self.layers = create_layer(rngs)
    self.head = nnx.Linear(8, 3, rngs=rngs)
    self.remat = remat

  def __call__(self, x):
    def forward(x, layer):
      return layer(x)

    if self.remat:
      forward = nnx.remat(forward)
    x = nnx.scan(forward, in_axes=(nnx.Carry, 0), out_axes=nnx.Carry)(x, self.layers)
    return self.head(x)


class Unrolled(nnx.Module):
  def __init__(self, stack: ScanStack):
    state = nnx.state(stack.layers)
    self.layers = nnx.List([Layer(nnx.Rngs(0)) for _ in range(3)])
    for i, layer in enumerate(self.layers):
      nnx.update(layer, jax.tree.map(lambda a, i=i: a[i], state))
    self.head = stack.head

  def __call__(self, x):
    for layer in self.layers:
      x = layer(x)
    return self.head(x)


def _per_layer_projector(seen):
  mats = jax.random.normal(jax.random.key(4), (3, 3, 8))

  def projector(error, points):
    out = []
    for p in points:
      seen.append((p.path, p.shape, p.stack_ndim))
      if p.stack_ndim:
        out.append(jnp.einsum("bo,lod->lbd", error, mats))
      else:
        out.append(error @ mats[int(p.path.split("/")[1])])
    return out

  return projector


def test_nnx_scan_stack_gives_one_point_per_layer_like_the_unrolled_model():
  for remat in (False, True):
    stack = ScanStack(nnx.Rngs(0), remat=remat)
    unrolled = Unrolled(stack)
    x = jax.random.normal(jax.random.key(5), (4, 8))
    loss = lambda m, x: (m(x) ** 2).mean()
    seen = []
    g_scan = nnx.jit(dfax.nnx.dfa_grad(loss, projector=_per_layer_projector(seen),
                                       feedback=Layer))(stack, x)
    assert seen == [("layers/in", (3, 4, 8), 1)]
    g_loop = dfax.nnx.dfa_grad(loss, projector=_per_layer_projector([]),
                               feedback=Layer)(unrolled, x)
    # The unrolled model's first layer sees the raw input: no point there, and so
    # the scanned stack's layer 0 gets no projection either (its input is x).
    for i in range(3):
      np.testing.assert_allclose(g_scan["layers"]["linear"]["kernel"][...][i],
                                 g_loop["layers"][i]["linear"]["kernel"][...],
                                 rtol=1e-5, atol=1e-7)
    assert not [k for k in vars(stack.layers) if k.startswith("_dfax")]


def test_after_every_layer_in_an_nnx_scan_stack():
  stack = ScanStack(nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(5), (4, 8))
  seen = []

  def projector(error, points):
    seen.extend((p.path, p.shape) for p in points)
    return [jnp.ones(p.shape, p.dtype) for p in points]

  loss = lambda m, x: (m(x) ** 2).mean()
  grads = dfax.nnx.dfa_grad(loss, projector=projector, feedback=dfax.after(Layer))(stack, x)
  assert seen == [("layers/out", (3, 4, 8))]
  exact = nnx.grad(loss)(stack, x)
  np.testing.assert_allclose(grads["head"]["kernel"][...], exact["head"]["kernel"][...],
                             rtol=1e-5)
  assert not np.allclose(grads["layers"]["linear"]["kernel"][...][0],
                         exact["layers"]["linear"]["kernel"][...][0])


class ShardedMLP(nnx.Module):
  """Flax's NNX sharding guide: parameters annotated with nnx.with_partitioning."""

  def __init__(self, rngs, sharded=True):
    init = nnx.initializers.lecun_normal()
    part = (lambda names: nnx.with_partitioning(init, names)) if sharded else (lambda _: init)
    self.hidden = nnx.Linear(8, 32, rngs=rngs, kernel_init=part((None, "model")))
    self.out = nnx.Linear(32, 4, rngs=rngs, kernel_init=part(("model", None)))

  def __call__(self, x):
    h = jnp.tanh(self.hidden(x))
    return {"logits": self.out(h), "hidden": h}  # a pytree output: error at "logits"


@pytest.mark.slow
def test_sharded_nnx_model_under_nnx_jit_equals_unsharded(cpu_devices):
  from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

  x = jax.random.normal(jax.random.key(6), (16, 8))
  loss = lambda m, x: jnp.mean(m(x)["logits"] ** 2)
  grad_fn = dfax.nnx.dfa_grad(loss, output="logits")
  reference = grad_fn(ShardedMLP(nnx.Rngs(0), sharded=False), x)
  mesh = Mesh(np.array(cpu_devices).reshape(2, 4), ("data", "model"))
  with jax.set_mesh(mesh):
    model = ShardedMLP(nnx.Rngs(0))
    state = nnx.state(model)
    nnx.update(model, jax.lax.with_sharding_constraint(state, nnx.get_partition_spec(state)))
    xs = jax.device_put(x, NamedSharding(mesh, P("data", None)))
    grads = nnx.jit(grad_fn)(model, xs)
  assert grads["hidden"]["kernel"][...].sharding.spec == P(None, "model")
  pure = nnx.to_pure_dict
  assert_trees_close(pure(grads), pure(reference))
  exact = nnx.grad(loss)(ShardedMLP(nnx.Rngs(0), sharded=False), x)
  assert_trees_close(pure(grads)["out"], pure(exact)["out"])
