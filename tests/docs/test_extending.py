"""docs/extending.md runs as written, and each entry it adds trains through the trainer.

The page's ``python`` blocks are executed in order in one namespace, with the
record tables swapped for copies so that the toy entries vanish afterwards.
Then each new entry is used as a user would: the projector and the device
backend against the contract's basics and in a training run, the model family
and the method in a training run, the method against the hybrid's oracle
(its top layer gets ``jax.grad``'s gradient, the layers below pure DFA's).
"""

from __future__ import annotations

import math
import pathlib
import re
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dfax
from dfax.models import MLP
from dfax.train import checkpoint, config_schema, families, methods
from dfax.train.config_file import load_config
from dfax.train.trainer import train_and_evaluate

REPO = pathlib.Path(__file__).resolve().parents[2]
PAGE = REPO / "docs" / "extending.md"
SMOKE = REPO / "configs" / "smoke.py"


@pytest.fixture(scope="module")
def guide():
  """The page's code run in one namespace, with the record tables restored afterwards."""
  tables = [(methods, "PROJECTORS"), (methods, "METHODS"), (families, "FAMILIES")]
  saved = [(module, name, getattr(module, name)) for module, name in tables]
  for module, name, table in saved:
    setattr(module, name, dict(table))
  blocks = re.findall(r"^```python\n(.*?)^```", PAGE.read_text(), flags=re.S | re.M)
  assert len(blocks) >= 5, "docs/extending.md lost its examples"
  guide_module = types.ModuleType("extending_guide")  # as if the page were a module
  sys.modules[guide_module.__name__] = guide_module    # (dataclasses look their module up)
  try:
    for block in blocks:
      exec(compile(block, str(PAGE), "exec"), guide_module.__dict__)  # noqa: S102
    yield guide_module.__dict__
  finally:
    del sys.modules[guide_module.__name__]
    for module, name, table in saved:
      setattr(module, name, table)


def _config(**overrides):
  base = {"num_steps": 20, "checkpoint_every": 20, "eval_every": 20, "log_every": 10,
          "alignment_every": 10, "dataset.train_limit": 256, "dataset.eval_limit": 100,
          "eval_batch_size": 100, "tensorboard": False}
  return load_config(SMOKE, **{**base, **overrides})


def _assert_learns(config, workdir):
  results = train_and_evaluate(config, str(workdir))
  assert results["status"] == "completed", results
  assert results["test_loss"] < math.log(10), results  # below chance's loss


def test_the_guide_adds_one_entry_of_each_kind(guide):
  assert "rademacher" in methods.PROJECTORS and "toy_device" in methods.PROJECTORS
  assert "residual_mlp" in families.FAMILIES and "hybrid_top" in methods.METHODS
  listed = config_schema.choices_help()
  for name in ("rademacher", "toy_device", "residual_mlp", "hybrid_top"):
    assert name in listed


def _points():
  return [dfax.PointSpec("a/in", (4, 8), "float32"),
          dfax.PointSpec("s/in", (3, 4, 6), "float32", stack_ndim=1)]


@pytest.mark.parametrize("make", ["rademacher", "toy_device"])
def test_the_new_projectors_keep_the_contract_basics(guide, make):
  if make == "rademacher":
    proj = guide["rademacher"](jax.random.key(0))
  else:
    proj = dfax.projectors.host_device(guide["ToyDevice"](0).project)
  error = jax.random.normal(jax.random.key(1), (4, 5))
  out = proj(error, _points())
  jitted = jax.jit(lambda e: proj(e, _points()))(error)
  for c, j, p in zip(out, jitted, _points()):
    assert c.shape == p.shape and np.isfinite(np.asarray(c)).all()
    np.testing.assert_allclose(c, j, rtol=1e-5, atol=1e-6)
  assert isinstance(proj, dfax.Projector)
  copies = np.asarray(out[1])
  assert not np.allclose(copies[0], copies[1])  # stacked copies are distinct points


def test_an_option_the_new_projector_does_not_read_is_refused(guide):
  config = load_config(SMOKE, **{"dfa.projector": "rademacher", "dfa.scale": "point"})
  with pytest.raises(ValueError, match="config.dfa.scale applies to"):
    methods.make_projector(config)


@pytest.mark.parametrize("overrides", [
    {"dfa.projector": "rademacher"},
    {"dfa.projector": "toy_device"},
    {"method": "hybrid_top"},
], ids=["projector", "device", "method"])
def test_each_new_entry_trains_through_the_trainer(guide, tmp_path, overrides):
  _assert_learns(_config(**overrides), tmp_path)


def test_the_new_family_trains_through_the_trainer(guide, tmp_path):
  config = _config(method="bp")  # the family's plumbing; DFA on it needs more than 20 steps
  config.model = families.get("residual_mlp").section(width=32)
  _assert_learns(config, tmp_path)
  params = jax.tree_util.tree_leaves_with_path(checkpoint.restore_params(str(tmp_path)))
  assert any("LayerNorm" in jax.tree_util.keystr(path) for path, _ in params)


def test_the_hybrid_method_is_exact_on_top_and_dfa_below(guide):
  """Oracle: the top hidden layer and head get jax.grad's gradients, the layer below pure
  DFA's (the same point, keyed by the same path, feeds it)."""
  config = load_config(SMOKE)
  model = MLP(num_classes=10, features=tuple(config.model.features))
  x = jax.random.normal(jax.random.key(0), (8, 784))
  y = jnp.arange(8) % 10
  params = model.init(jax.random.key(1), x)
  loss_fn = lambda p, x, y: methods.cross_entropy(model.apply(p, x), y)
  with jax.default_matmul_precision("highest"):
    _, hybrid = methods.METHODS["hybrid_top"].value_and_grad(loss_fn, config, model, None)(
        params, x, y)
    exact = jax.grad(loss_fn)(params, x, y)
    _, dfa = methods.METHODS["dfa"].value_and_grad(loss_fn, config, model, None)(params, x, y)
  top, head = "Dense_1", "Dense_2"
  for name in (top, head):
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
                 hybrid["params"][name], exact["params"][name])
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
               hybrid["params"]["Dense_0"], dfa["params"]["Dense_0"])
  assert not np.allclose(hybrid["params"]["Dense_0"]["kernel"],
                         exact["params"]["Dense_0"]["kernel"], atol=1e-6)
