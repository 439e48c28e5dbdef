"""The training loop: exact resume, shallow, reproducibility, CLI, mesh (faults: test_faults.py)."""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from dfax.train import checkpoint, registry
from dfax.train.config_file import load_config
from dfax.train.trainer import train_and_evaluate

REPO = pathlib.Path(__file__).resolve().parents[2]
SMOKE = REPO / "configs" / "smoke.py"


def _config(**overrides):
  base = {"num_steps": 30, "checkpoint_every": 10, "eval_every": 15, "log_every": 5,
          "alignment_every": 10, "max_to_keep": 10, "dataset.train_limit": 512,
          "dataset.eval_limit": 200, "eval_batch_size": 200}
  base.update(overrides)
  return load_config(SMOKE, **base)


def _latest_params(workdir):
  return checkpoint.restore_params(str(workdir))


def _assert_same(a, b):
  jax.tree.map(lambda u, v: np.testing.assert_array_equal(np.asarray(u), np.asarray(v)), a, b)


@pytest.mark.parametrize("method", ["dfa", "bp"])
@pytest.mark.slow
def test_resume_reproduces_the_uninterrupted_run(tmp_path, method):
  full, part = tmp_path / "full", tmp_path / "part"
  train_and_evaluate(_config(method=method), str(full))
  # A run "interrupted" at step 10: its workdir holds only the step-10 checkpoint.
  (part / "checkpoints").mkdir(parents=True)
  shutil.copytree(full / "checkpoints" / "10", part / "checkpoints" / "10")
  results = train_and_evaluate(_config(method=method), str(part))
  assert results["resumed_from"] == 10 and results["steps"] == 30
  step_a, params_a = _latest_params(full)
  step_b, params_b = _latest_params(part)
  assert step_a == step_b == 30
  _assert_same(params_a, params_b)
  rows = [json.loads(l) for l in open(part / "metrics.jsonl")]
  assert max(r["step"] for r in rows) == 30


@pytest.mark.slow
def test_same_seed_same_run_and_outputs(tmp_path):
  config = _config()
  before = config.to_json()
  a = train_and_evaluate(config, str(tmp_path / "a"))
  assert config.to_json() == before  # the caller's config is not changed
  b = train_and_evaluate(_config(), str(tmp_path / "b"))
  assert a["test_accuracy"] == b["test_accuracy"] and a["test_loss"] == b["test_loss"]
  for name in ("metrics.jsonl", "results.json", "curves.png", "alignment.png", "config.json"):
    assert (tmp_path / "a" / name).exists(), name
  rows = [json.loads(l) for l in open(tmp_path / "a" / "metrics.jsonl")]
  cos = [r["alignment"] for r in rows if "alignment" in r]
  assert cos and abs(cos[-1]["Dense_2"] - 1.0) < 1e-4  # last layer: exact gradient
  assert all(-1.0 <= v <= 1.0 for c in cos for v in c.values())


def test_shallow_trains_only_the_last_layer(tmp_path):
  train_and_evaluate(_config(method="shallow", num_steps=10), str(tmp_path))
  _, trained = _latest_params(tmp_path)
  config = _config(method="shallow")
  model, task = registry.build(config)
  init = model.init(jax.random.key(config.seed), task.x_eval[:1])
  _assert_same(trained["params"]["Dense_0"], init["params"]["Dense_0"])
  _assert_same(trained["params"]["Dense_1"], init["params"]["Dense_1"])
  assert not np.allclose(trained["params"]["Dense_2"]["kernel"],
                         init["params"]["Dense_2"]["kernel"])


def test_cli_end_to_end(tmp_path):
  env = {**os.environ, "XLA_FLAGS": "", "JAX_PLATFORMS": "cpu"}
  done = subprocess.run([sys.executable, "-m", "dfax.train", "--config", str(SMOKE),
                         "--workdir", str(tmp_path / "smoke")], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]
  results = json.loads((tmp_path / "smoke" / "results.json").read_text())
  assert results["status"] == "completed" and results["steps"] == 150
  assert results["test_accuracy"] > 0.5  # 150 DFA steps on 1024 examples
  for name in ("curves.png", "alignment.png", "metrics.jsonl"):
    assert (tmp_path / "smoke" / name).stat().st_size > 0


@pytest.mark.slow
def test_training_on_a_data_x_model_mesh_equals_one_device(tmp_path):
  one = train_and_evaluate(_config(num_steps=10, **{"mesh.data": 1}), str(tmp_path / "one"))
  eight = train_and_evaluate(_config(num_steps=10, **{"mesh.data": 4, "mesh.model": 2}),
                             str(tmp_path / "eight"))
  assert (one["devices"], eight["devices"]) == (1, 8)
  assert abs(one["test_loss"] - eight["test_loss"]) < 1e-4
  _, p1 = _latest_params(tmp_path / "one")
  _, p8 = _latest_params(tmp_path / "eight")
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), p1, p8)


@pytest.mark.slow
def test_each_model_family_is_applied_as_it_needs():
  import dataclasses

  import jax.numpy as jnp

  import dfax
  from dfax import models
  from dfax.train.trainer import model_logits

  mlp, x = models.MLP(features=(8,), num_classes=3), jnp.ones((2, 5))
  params = mlp.init(jax.random.key(0), x)
  _assert_same(model_logits(load_config(SMOKE), mlp, params, x), mlp.apply(params, x))
  with pytest.raises(TypeError, match="model.apply"):
    models.lm_forward(mlp, params, x)  # lm_forward is for the LM only

  lm_config = load_config(REPO / "configs" / "shakespeare_lm.py")
  small = models.TransformerConfig(vocab_size=11, d_model=8, num_heads=2, num_layers=1,
                                   d_ff=16, max_len=4)
  tokens = jnp.arange(8).reshape(2, 4) % 11
  for error_at, error_width in (("hidden", 8), ("logits", 11)):
    lm = models.TransformerLM(dataclasses.replace(small, error_at=error_at))
    lm_params = lm.init(jax.random.key(1), tokens)
    logits = model_logits(lm_config, lm, lm_params, tokens)
    _assert_same(logits, models.lm_forward(lm, lm_params, tokens))
    np.testing.assert_allclose(logits, lm.apply(lm_params, tokens), rtol=1e-5, atol=1e-6)
    errors = []

    def recording(error, points):
      errors.append(error.shape)
      return dfax.projectors.zeros()(error, points)

    loss = lambda p: model_logits(lm_config, lm, p, tokens).mean()
    dfax.dfa_grad(loss, projector=recording, feedback=models.Block)(lm_params)
    assert errors == [(2, 4, error_width)]  # the error is taken where error_at says
