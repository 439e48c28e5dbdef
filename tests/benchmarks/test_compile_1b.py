"""benchmarks/compile_1b.py: the 1B config is on the trainer's schema; its cheapest mode runs.

The 1B model itself takes tens of seconds to compile on 2 cores, so the test
compiles the same step for configs/lm_1b.py shrunk through load_config's
overrides (the path any run takes), on the 2x4 mesh of 8 host devices.
"""

import importlib.util
import pathlib

import pytest

from dfax.train.config_file import load_config
from dfax.train.errors import ConfigError

REPO = pathlib.Path(__file__).resolve().parents[2]
SMALL = {"model.d_model": 16, "model.num_heads": 2, "model.num_layers": 2, "model.d_ff": 32,
         "dataset.seq_len": 8}


def _module(path: pathlib.Path, name: str):
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.fixture(scope="module")
def compile_1b():
  return _module(REPO / "benchmarks" / "compile_1b.py", "compile_1b")


def _small_config_file(tmp_path, **extra) -> pathlib.Path:
  path = tmp_path / "lm_small.py"
  overrides = {**SMALL, **extra}
  path.write_text(
      "from dfax.train.config_file import load_config\n"
      "VOCAB_SIZE = 24\n"
      f"def get_config():\n  return load_config({str(REPO / 'configs' / 'lm_1b.py')!r}, "
      f"**{overrides!r})\n")
  return path


def test_the_1b_config_is_on_the_schema_and_builds_through_the_registry(compile_1b):
  from dfax.train import validate

  config = load_config(REPO / "configs" / "lm_1b.py")
  validate.check_config(config)  # the trainer's checks: every field is the schema's
  model = compile_1b.build_model(config, 32000)
  assert (model.config.d_model, model.config.num_layers, model.config.max_len) == (2048, 20, 1024)
  assert model.config.remat and model.config.error_at == "hidden"


@pytest.mark.slow
def test_compiles_the_dfa_step_on_a_2x4_mesh(compile_1b, tmp_path, capsys):
  compiled = compile_1b.main(["--config", str(_small_config_file(tmp_path)),
                              "--preset", "macro_out", "--norm", "post"])
  out = capsys.readouterr().out
  assert "method=dfa preset=macro_out norm=post" in out and "mesh=2x4" in out, out
  assert compiled.memory_analysis().argument_size_in_bytes > 0


def test_a_bad_field_is_refused_before_compiling(compile_1b, tmp_path):
  with pytest.raises(ConfigError, match="num_heads"):
    compile_1b.main(["--config", str(_small_config_file(tmp_path, **{"model.num_heads": 3}))])
