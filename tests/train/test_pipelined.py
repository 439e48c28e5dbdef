"""The trainer's pipeline (--config.mesh.stage): same run as on one device; bad configs named.

Runs on the 8 host devices tests/conftest.py asks for: 2 data shards x 4 stages.
"""

import os
import pathlib

import numpy as np
import pytest

from dfax.train.trainer import train_and_evaluate
from dfax.train.errors import ConfigError
from dfax.train.config_file import load_config
from dfax.train.metrics import read_metrics

PIPELINE = pathlib.Path(__file__).resolve().parents[2] / "configs" / "mnist_pipeline.py"
TINY = {"model.d": 32, "model.d_ff": 64, "dataset.source": "local", "dataset.train_limit": 256,
        "dataset.eval_limit": 200, "batch_size": 32, "num_steps": 4, "log_every": 1,
        "eval_every": 4, "alignment_every": 0, "checkpoint_every": 4, "eval_batch_size": 100,
        "progress_bar": False, "tensorboard": False}


def _run(tmp_path, name, **overrides):
  config = load_config(PIPELINE, **{**TINY, **overrides})
  results = train_and_evaluate(config, os.fspath(tmp_path / name))
  losses = [r["train_loss"] for r in read_metrics(os.fspath(tmp_path / name / "metrics.jsonl"))
            if "train_loss" in r]
  return results, losses


@pytest.mark.slow
def test_pipelined_dfa_run_over_data_and_stages_equals_the_one_device_run(tmp_path,
                                                                          host_platform):
  piped, piped_losses = _run(tmp_path, "pipe", **{"mesh.data": 2})
  single, single_losses = _run(tmp_path, "one", **{"mesh.stage": 1, "mesh.microbatches": 1})
  assert len(piped_losses) == 4
  np.testing.assert_allclose(piped_losses, single_losses, rtol=2e-4)
  np.testing.assert_allclose(piped["test_loss"], single["test_loss"], rtol=2e-4)


@pytest.mark.parametrize("overrides, fix", [
    ({"model.num_stages": 2}, "model.num_stages=4"),
    ({"dfa.feedback": ""}, "dfa.feedback=markers"),
    ({"batch_size": 30}, "batch_size=28"),
    ({"method": "shallow"}, "mesh.stage=1"),
    ({"mesh.model": 2}, "mesh.model=1"),
    ({"mesh.stage": 1}, "mesh.microbatches=1"),
    ({"mesh.data": 4}, "device_count=16"),
])
def test_bad_pipeline_configs_name_the_fix_before_writing(tmp_path, overrides, fix):
  config = load_config(PIPELINE, **{**TINY, **overrides})
  with pytest.raises(ConfigError, match=fix):
    train_and_evaluate(config, os.fspath(tmp_path / "w"))
  assert not (tmp_path / "w").exists()


def test_a_model_the_pipeline_cannot_split_is_named(tmp_path):
  config = load_config(PIPELINE.parent / "smoke.py", **{"mesh.stage": 2})
  with pytest.raises(ConfigError, match="stacked_mlp"):
    train_and_evaluate(config, os.fspath(tmp_path / "w"))
