"""scripts/opu_lm_error.py (cited by docs/opu.md and docs/depth.md) runs and shows what each
setting mends."""

import importlib.util
import pathlib

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "opu_lm_error.py"


@pytest.fixture(scope="module")
def script():
  spec = importlib.util.spec_from_file_location("opu_lm_error", SCRIPT)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_kept_pixels_remove_the_noisy_columns_and_bit_planes_carry_the_wrong_symbols(
    script, capsys):
  rows = script.main([])  # 1024 tokens onto 16 x 128 columns
  ternary, kept = rows["ternary"], rows["ternary_keep"]
  assert ternary["peak_ratio"] > 3 and kept["peak_ratio"] < 1.5
  assert kept["cosine_p10"] > ternary["cosine_p10"] and kept["cosine_p10"] > 0.9
  assert kept["noisy_columns"] < ternary["noisy_columns"]
  # one ternary pair keeps only the target's entry of a near-uniform prediction
  assert abs(ternary["wrong_symbols_cosine"]) < 0.1 and abs(kept["wrong_symbols_cosine"]) < 0.1
  assert rows["bits4_keep"]["wrong_symbols_cosine"] > 0.5
  assert rows["bits4_keep"]["wrong_symbols_cosine"] > rows["bits1_keep"]["wrong_symbols_cosine"]
  assert "bits4_keep" in capsys.readouterr().out


def test_an_unknown_setting_is_refused_naming_the_choices(script):
  with pytest.raises(SystemExit, match="unknown settings \\['nope'\\]; choose from ternary"):
    script.main(["--settings", "nope"])
