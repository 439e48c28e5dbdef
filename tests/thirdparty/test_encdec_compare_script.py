"""scripts/encdec_compare.py runs end to end in --quick mode and draws its figure."""

import importlib.util
import json
import math
import pathlib
import sys

import pytest

pytest.importorskip("transformers")
pytest.importorskip("matplotlib")

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "encdec_compare.py"


def _script():
  spec = importlib.util.spec_from_file_location("encdec_compare", SCRIPT)
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module  # its dataclasses look their module up there
  spec.loader.exec_module(module)
  return module


@pytest.mark.slow
def test_quick_run_writes_results_and_figure(tmp_path):
  results, figure = tmp_path / "runs.jsonl", tmp_path / "fig.png"
  rows = _script().main(["--quick", "--models", "bart", "--methods", "dfa,last_block",
                         "--results", str(results), "--plot", str(figure)])
  assert [(r["model"], r["method"]) for r in rows] == [("bart", "dfa"), ("bart", "last_block")]
  saved = [json.loads(line) for line in results.read_text().splitlines()]
  assert [r["method"] for r in saved] == ["dfa", "last_block"]
  for r in saved:
    assert r["steps"] == 3 and len(r["curve"]) == 1 and math.isfinite(r["test_loss"])
    assert 0 <= r["test_accuracy"] <= 1 and "eval_loss" not in r
  assert figure.stat().st_size > 1000


def test_unknown_method_is_refused():
  with pytest.raises(ValueError, match="unknown method"):
    _script().main(["--quick", "--models", "llama", "--methods", "nonsense"])
