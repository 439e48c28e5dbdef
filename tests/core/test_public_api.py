"""dfax reaches JAX and Flax through public APIs, and importing it changes nothing."""

import pathlib
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx
from flax.linen import transforms

import dfax
import dfax.nnx
from dfax.core import lifted

DFAX = pathlib.Path(dfax.__file__).parent


def test_no_jax_internals_in_dfax():
  offenders = [str(p) for p in DFAX.rglob("*.py") if "jax._src" in p.read_text()]
  assert not offenders, offenders


def test_importing_dfax_leaves_flax_unchanged():
  script = """
import flax.linen as nn
from flax import nnx
from flax.linen import transforms
before = (transforms.module_class_lift_transform, nnx.Linear.__call__, nn.Dense.__call__,
          nnx.Module.__dict__.get('__call__'))
import dfax, dfax.nnx, dfax.opu, dfax.projectors
after = (transforms.module_class_lift_transform, nnx.Linear.__call__, nn.Dense.__call__,
         nnx.Module.__dict__.get('__call__'))
assert all(a is b for a, b in zip(before, after)), (before, after)
print("unchanged")
"""
  out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       check=False)
  assert out.returncode == 0 and "unchanged" in out.stdout, out.stderr[-2000:]


class Block(nn.Module):
  @nn.compact
  def __call__(self, h, _):
    return nn.tanh(nn.Dense(4)(h)), None


class Scanned(nn.Module):
  @nn.compact
  def __call__(self, x):
    stack = nn.scan(Block, variable_axes={"params": 0}, split_rngs={"params": True}, length=2)
    h, _ = stack()(nn.Dense(4)(x), None)
    return nn.Dense(2)(h)


SCANNED_AT_IMPORT = nn.scan(Block, variable_axes={"params": 0}, split_rngs={"params": True},
                            length=2)


class ScannedAtImport(nn.Module):
  @nn.compact
  def __call__(self, x):
    h, _ = SCANNED_AT_IMPORT(name="blocks")(nn.Dense(4)(x), None)
    return nn.Dense(2)(h)


def test_flax_lifted_classes_are_touched_only_during_a_trace():
  lifted.check_flax_internals()  # fails loudly if Flax changes what dfax relies on
  factory = transforms.module_class_lift_transform
  call = vars(SCANNED_AT_IMPORT)["__call__"]
  x = jnp.ones((3, 4))
  for model, name in ((Scanned(), "ScanBlock_0"), (ScannedAtImport(), "blocks")):
    params = model.init(jax.random.key(0), x)
    grads = dfax.dfa_grad(lambda p: model.apply(p, x).sum(), feedback=Block)(params)
    assert grads["params"][name]["Dense_0"]["kernel"].shape == (2, 4, 4)
  assert transforms.module_class_lift_transform is factory
  assert vars(SCANNED_AT_IMPORT)["__call__"] is call


def test_nnx_classes_untouched_after_a_trace():
  call = nnx.Linear.__call__
  model = nnx.Sequential(nnx.Linear(4, 4, rngs=nnx.Rngs(0)), nnx.tanh,
                         nnx.Linear(4, 2, rngs=nnx.Rngs(1)))
  dfax.nnx.dfa_grad(lambda m: m(jnp.ones((2, 4))).sum())(model)
  assert nnx.Linear.__call__ is call and type(model.layers[0]) is nnx.Linear
