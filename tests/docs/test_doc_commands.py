"""Every ``python -m dfax.train`` command in a bash block of the README and docs is valid.

Each command's ``--config`` file and ``--config.FIELD=VALUE`` overrides go through the
CLI's own flag parsing (``ml_collections.config_flags``, on fresh flag values) and
``dfax.train.validate.check_config``: a renamed field, a removed option or a bad value in
a documented command fails here, without training anything.
"""

from __future__ import annotations

import pathlib
import shlex

import pytest
from absl import flags
from ml_collections import config_flags

from dfax.train import validate

REPO = pathlib.Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def _bash_blocks(text: str):
  """The bodies of the page's ```bash fences."""
  language, lines = None, []
  for line in text.splitlines():
    stripped = line.strip()
    if stripped.startswith("```"):
      if language is None:
        language, lines = stripped[3:].strip(), []
      else:
        if language in ("bash", "sh"):
          yield "\n".join(lines)
        language = None
    elif language is not None:
      lines.append(stripped)


def _train_commands():
  for page in PAGES:
    for block in _bash_blocks(page.read_text()):
      for line in block.replace("\\\n", " ").splitlines():
        if "python -m dfax.train " in line:
          command = line[line.index("python -m dfax.train "):].split("&&")[0]
          yield pytest.param(shlex.split(command, comments=True)[3:],
                             id=f"{page.name}:{' '.join(shlex.split(command)[3:])}"[:120])


COMMANDS = list(_train_commands())


def test_the_docs_have_train_commands():
  assert len(COMMANDS) >= 4, [c.values for c in COMMANDS]


def _config_flags(argv: list[str]) -> list[str]:
  """The command's ``--config`` file and ``--config.FIELD=VALUE`` overrides."""
  kept, args = [], iter(argv)
  for arg in args:
    if arg == "--config":
      kept += [arg, next(args)]
    elif arg.startswith(("--config=", "--config.")):
      kept.append(arg)
  return kept


@pytest.mark.parametrize("argv", COMMANDS)
def test_documented_train_command_is_a_valid_config(argv, monkeypatch):
  monkeypatch.chdir(REPO)  # the docs' paths are relative to the repository root
  argv = ["dfax.train", *_config_flags(argv)]
  values = flags.FlagValues()  # the CLI's parsing, on flags of its own
  config_flags.DEFINE_config_file("config", None, "config file", flag_values=values,
                                  lock_config=True, sys_argv=argv)
  values(argv)
  validate.check_config(values.config)
