"""The training CLI runs DFA through the simulated OPU and reports its cost."""

import json
import pathlib
import subprocess
import sys

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


def test_optional_opu_settings_can_be_set_from_the_command_line(tmp_path):
  """topk and input_bits default to None; the CLI's flags still set them (typed
  placeholders), and the run's config.json records them."""
  workdir = tmp_path / "run"
  done = subprocess.run(
      [sys.executable, "-m", "dfax.train", "--config", str(SMOKE), "--workdir", str(workdir),
       "--config.num_steps=2", "--config.progress_bar=False", "--config.dfa.projector=opu",
       "--config.dfa.opu.input_bits=2", "--config.dfa.opu.anchor_keep=0.5",
       "--config.dfa.opu.ternarize=True"],
      capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  opu = json.loads((workdir / "config.json").read_text())["dfa"]["opu"]
  assert (opu["input_bits"], opu["anchor_keep"], opu["topk"]) == (2, 0.5, None)
  topk = subprocess.run(
      [sys.executable, "-m", "dfax.train", "--config", str(SMOKE), "--workdir",
       str(tmp_path / "other"), "--config.dfa.opu.topk=lots"],
      capture_output=True, text=True, timeout=300)
  assert topk.returncode != 0 and "topk" in topk.stderr
  assert not (tmp_path / "other").exists()
