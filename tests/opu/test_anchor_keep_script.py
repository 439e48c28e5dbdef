"""scripts/opu_anchor_keep.py (cited by docs/opu.md) runs and shows what anchor_keep mends."""

import importlib.util
import pathlib

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "opu_anchor_keep.py"


def test_keeping_the_strongest_anchors_removes_the_noisy_columns(capsys):
  spec = importlib.util.spec_from_file_location("opu_anchor_keep", SCRIPT)
  script = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(script)
  every, kept = script.main(["--keep", "1,0.5"])  # 1024 tokens onto 16 x 128 columns
  assert (every["anchor_keep"], kept["anchor_keep"]) == (1.0, 0.5)
  assert every["peak_ratio"] > 3 and kept["peak_ratio"] < 1.5
  assert kept["cosine_p10"] > every["cosine_p10"] and kept["cosine_p10"] > 0.9
  assert kept["noisy_columns"] < every["noisy_columns"]
  assert "anchor_keep 0.5" in capsys.readouterr().out
