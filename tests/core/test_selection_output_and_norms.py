"""No cut at the model's output; norm layers selected by role; dfax.testing after `import dfax`.

* A selection that would cut the output itself (``dfax.after(nn.Dense)`` also
  picks an MLP's output layer) leaves that cut out: the output layer trains on
  the true error, exactly as ``jax.grad`` trains it, and only the hidden layers
  are points. Linen and NNX.
* ``dfax.is_norm_layer`` picks per-example normalisation layers by class name
  (Flax's, NNX's and foreign ones), not BatchNorm, WeightNorm or SpectralNorm.
* ``dfax.testing`` is reachable as an attribute after a bare ``import dfax``,
  and its oracle on an ``nnx.scan`` model states its limitation.
"""

import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import dfax
import dfax.nnx
from dfax.models import presets

IN, HIDDEN, OUT, BATCH = 5, 16, 3, 8


def _data():
  x = jax.random.normal(jax.random.key(0), (BATCH, IN))
  y = jax.random.normal(jax.random.key(1), (BATCH, OUT))
  return x, y


def _recording(seen):
  gaussian = dfax.projectors.gaussian(jax.random.key(3))

  def projector(error, points):
    seen.append(tuple(p.path for p in points))
    return gaussian(error, points)

  return projector


def test_after_dense_on_a_linen_mlp_leaves_out_the_output_cut():
  model = nn.Sequential([nn.Dense(HIDDEN), nn.tanh, nn.Dense(HIDDEN), nn.tanh, nn.Dense(OUT)])
  x, y = _data()
  params = model.init(jax.random.key(2), x)
  loss = lambda p: jnp.mean((model.apply(p, x) - y) ** 2)
  seen = []
  with jax.default_matmul_precision("highest"):
    dfa = dfax.dfa_grad(loss, projector=_recording(seen), feedback=dfax.after(nn.Dense))(params)
    exact = jax.grad(loss)(params)
  assert seen == [("layers_0/out", "layers_2/out")]  # the hidden layers only
  np.testing.assert_allclose(dfa["params"]["layers_4"]["kernel"],
                             exact["params"]["layers_4"]["kernel"], rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(dfa["params"]["layers_4"]["bias"],
                             exact["params"]["layers_4"]["bias"], rtol=1e-6, atol=1e-7)
  for hidden in ("layers_0", "layers_2"):  # these did get DFA, not backprop
    assert not np.allclose(dfa["params"][hidden]["kernel"], exact["params"][hidden]["kernel"],
                           rtol=1e-2)


def test_after_linear_on_an_nnx_mlp_leaves_out_the_output_cut():
  rngs = nnx.Rngs(0)
  model = nnx.Sequential(nnx.Linear(IN, HIDDEN, rngs=rngs), nnx.tanh,
                         nnx.Linear(HIDDEN, HIDDEN, rngs=rngs), nnx.tanh,
                         nnx.Linear(HIDDEN, OUT, rngs=rngs))
  x, y = _data()
  loss = lambda m: jnp.mean((m(x) - y) ** 2)
  seen = []
  with jax.default_matmul_precision("highest"):
    dfa = dfax.nnx.dfa_grad(loss, projector=_recording(seen),
                            feedback=dfax.after(nnx.Linear))(model)
    exact = nnx.grad(loss)(model)
  assert seen == [("layers/0/out", "layers/2/out")]
  for name in ("kernel", "bias"):
    np.testing.assert_allclose(dfa["layers"][4][name][...], exact["layers"][4][name][...],
                               rtol=1e-6, atol=1e-7)
  assert not np.allclose(dfa["layers"][0]["kernel"][...], exact["layers"][0]["kernel"][...],
                         rtol=1e-2)


class MarkedAtTheEnd(nn.Module):
  """A marker on the hidden layer and one on the output itself."""

  @nn.compact
  def __call__(self, x):
    h = dfax.FeedbackPoint(name="hidden")(jnp.tanh(nn.Dense(HIDDEN)(x)))
    return dfax.FeedbackPoint(name="end")(nn.Dense(OUT)(h))


def test_a_marker_on_the_output_is_left_out_too():
  model = MarkedAtTheEnd()
  x, y = _data()
  params = model.init(jax.random.key(2), x)
  loss = lambda p: jnp.mean((model.apply(p, x) - y) ** 2)
  seen = []
  with jax.default_matmul_precision("highest"):
    dfa = dfax.dfa_grad(loss, projector=_recording(seen), feedback=dfax.FeedbackPoint)(params)
    exact = jax.grad(loss)(params)
  assert seen == [("hidden/in",)]
  np.testing.assert_allclose(dfa["params"]["Dense_1"]["kernel"],
                             exact["params"]["Dense_1"]["kernel"], rtol=1e-6, atol=1e-7)


def test_selecting_only_the_output_layer_is_refused_naming_it():
  model = nn.Sequential([nn.Dense(HIDDEN), nn.tanh, nn.Dense(OUT)])
  x, y = _data()
  params = model.init(jax.random.key(2), x)
  loss = lambda p: jnp.mean((model.apply(p, x) - y) ** 2)
  only_head = dfax.after(dfax.by_name("layers_2"))
  with pytest.raises(ValueError, match=r"layers_2 \(Dense\): its output is the model's output"):
    dfax.dfa_grad(loss, feedback=only_head)(params)


def test_is_norm_layer_rule():
  rngs = nnx.Rngs(0)
  picked = [nn.LayerNorm(), nn.RMSNorm(), nn.GroupNorm(num_groups=2), nn.InstanceNorm(),
            nnx.LayerNorm(4, rngs=rngs), nnx.RMSNorm(4, rngs=rngs),
            nnx.GroupNorm(4, num_groups=2, rngs=rngs)]
  not_picked = [nn.BatchNorm(), nn.WeightNorm(nn.Dense(3)), nn.SpectralNorm(nn.Dense(3)),
                nn.Dense(3), nnx.BatchNorm(4, rngs=rngs), nnx.Linear(4, 4, rngs=rngs)]

  class FlaxFooRMSNorm(nn.Module):  # a foreign norm class, named by the convention
    pass

  class FinalNorm(FlaxFooRMSNorm):  # named otherwise, but a norm class by inheritance
    pass

  class Normalize(nn.Module):  # does not follow the naming rule: not picked
    pass

  picked += [FlaxFooRMSNorm(), FinalNorm()]
  not_picked += [Normalize()]
  assert [type(m).__name__ for m in picked if not dfax.is_norm_layer(m, ())] == []
  assert [type(m).__name__ for m in not_picked if dfax.is_norm_layer(m, ())] == []


@pytest.mark.slow
def test_after_ln_preset_is_after_is_norm_layer_and_picks_rmsnorm_and_groupnorm():
  assert presets.after_ln() == dfax.after(dfax.is_norm_layer)

  class Net(nn.Module):
    @nn.compact
    def __call__(self, x):
      h = nn.RMSNorm(name="rms")(nn.Dense(8, name="fc0")(x))
      h = nn.GroupNorm(num_groups=2, name="group")(nn.Dense(8, name="fc1")(h))
      h = nn.BatchNorm(use_running_average=True, name="batch")(nn.Dense(8, name="fc2")(h))
      return nn.Dense(OUT, name="head")(h)

  x, _ = _data()
  model = Net()
  variables = model.init(jax.random.key(2), x)
  seen = []
  dfax.dfa_grad(lambda p: jnp.sum(model.apply(p, x) ** 2), projector=_recording(seen),
                feedback=presets.after_ln())(variables)
  assert seen == [("rms/out", "group/out")]


def test_is_norm_layer_selects_nnx_norms_in_an_nnx_model():
  rngs = nnx.Rngs(0)

  class Net(nnx.Module):
    def __init__(self):
      self.fc0, self.ln = nnx.Linear(IN, 8, rngs=rngs), nnx.LayerNorm(8, rngs=rngs)
      self.fc1, self.rms = nnx.Linear(8, 8, rngs=rngs), nnx.RMSNorm(8, rngs=rngs)
      self.fc2, self.bn = nnx.Linear(8, 8, rngs=rngs), nnx.BatchNorm(8, rngs=rngs)
      self.head = nnx.Linear(8, OUT, rngs=rngs)

    def __call__(self, x):
      h = self.rms(self.fc1(self.ln(self.fc0(x))))
      return self.head(self.bn(self.fc2(h)))

  x, _ = _data()
  seen = []
  dfax.nnx.dfa_grad(lambda m: jnp.sum(m(x) ** 2), projector=_recording(seen),
                    feedback=dfax.after(dfax.is_norm_layer))(Net())
  assert seen == [("ln/out", "rms/out")]


def test_testing_is_reachable_after_import_dfax():
  script = "import dfax; print(dfax.testing.oracle_projector.__name__)"
  out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       check=False)
  assert out.returncode == 0 and out.stdout.strip() == "oracle_projector", out.stderr[-2000:]


class Layer(nnx.Module):
  def __init__(self, rngs):
    self.linear = nnx.Linear(8, 8, rngs=rngs)

  def __call__(self, x):
    return jnp.tanh(self.linear(x))


class ScanStack(nnx.Module):
  """Flax's NNX "scan over layers" guide: nnx.vmap to build, nnx.scan to run."""

  def __init__(self, rngs):
    @nnx.split_rngs(splits=3)
    @nnx.vmap(in_axes=(0,), out_axes=0)
    def create_layer(rngs):
      return Layer(rngs)

    self.layers = create_layer(rngs)
    self.head = nnx.Linear(8, 3, rngs=rngs)

  def __call__(self, x):
    x = nnx.scan(lambda x, layer: layer(x), in_axes=(nnx.Carry, 0), out_axes=nnx.Carry)(
        x, self.layers)
    return self.head(x)


@pytest.mark.slow
def test_oracle_on_an_nnx_scan_model_states_its_limitation():
  model = ScanStack(nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(5), (4, 8))
  loss = lambda m, x: jnp.mean(m(x) ** 2)
  make = lambda p: dfax.nnx.dfa_grad(loss, projector=p, feedback=dfax.after(Layer))
  with pytest.raises(NotImplementedError,
                     match=r"dfax.testing: the oracle cannot check feedback points made "
                           r"inside an NNX transform \(here by Layer under nnx.scan"):
    dfax.testing.oracle_projector(make, model, x)
  make(dfax.projectors.gaussian(jax.random.key(1)))(model, x)  # DFA itself still runs
