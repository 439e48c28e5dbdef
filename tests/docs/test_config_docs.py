"""docs/config.md and --help come from dfax.train.config_schema.FIELDS."""

import importlib.util
import pathlib
import subprocess
import sys

import pytest

pytest.importorskip("ml_collections")

from dfax.train import config_schema  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _generator():
  spec = importlib.util.spec_from_file_location("gen_config_docs",
                                                ROOT / "scripts" / "gen_config_docs.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_committed_page_is_the_generated_one():
  assert (ROOT / "docs" / "config.md").read_text() == _generator().render(), (
      "docs/config.md is out of date: run python scripts/gen_config_docs.py")


def test_one_record_per_field_of_the_defaults():
  def leaves(d, prefix=""):
    for k, v in d.items():
      if isinstance(v, dict):
        yield from leaves(v, f"{prefix}{k}.")
      else:
        yield f"{prefix}{k}"

  names = [f.name for f in config_schema.FIELDS]
  assert len(names) == len(set(names))
  assert sorted(leaves(config_schema.default_config().to_dict())) == sorted(names)
  assert all(f.help and "\n" not in f.help for f in config_schema.FIELDS)


def test_help_lists_every_field_with_its_default():
  out = subprocess.run([sys.executable, "-m", "dfax.train", "--help"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr
  assert "--workdir" in out.stdout and "--allow_changes" in out.stdout
  for f in config_schema.FIELDS:
    assert f"--config.{f.name}={f.default!r}" in out.stdout, f.name


def test_a_misspelt_field_is_one_clean_line(tmp_path):
  out = subprocess.run([sys.executable, "-m", "dfax.train", "--config=configs/smoke.py",
                        f"--workdir={tmp_path / 'run'}", "--config.methd=bp"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 2
  line = out.stderr.strip()
  assert "\n" not in line and "\\'" not in line and "\\n" not in line, line
  assert line.startswith("dfax.train: --config.methd names no field") and '"method"' in line
  assert not (tmp_path / "run").exists()
