"""The training CLI runs DFA through the simulated OPU and reports its cost."""

import json
import pathlib

import pytest

from dfax.train.config_file import load_config
from dfax.train.trainer import train_and_evaluate

SMOKE = pathlib.Path(__file__).resolve().parents[2] / "configs" / "smoke.py"


@pytest.mark.slow
def test_opu_projector_trains_and_reports_cost(tmp_path):
  config = load_config(SMOKE, **{"dfa.projector": "opu", "num_steps": 150,
                                 "dataset.train_limit": 512, "eval_every": 150})
  results = train_and_evaluate(config, str(tmp_path))
  assert results["test_accuracy"] > 0.3  # chance: 0.1 (digital DFA: ~0.58 here)
  cost = results["opu_cost_per_step"]
  assert cost["width"] == 64 + 64 and cost["n_out"] == 10
  assert cost["frames"] == 64 * 4
  rows = [json.loads(l) for l in open(tmp_path / "metrics.jsonl")]
  assert any("opu_cost_per_step" in r for r in rows)
