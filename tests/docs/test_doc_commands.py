"""Every command the README and docs give is one its program takes.

* ``python -m dfax.train`` with a config file of ``configs/``: the file and the
  ``--config.FIELD=VALUE`` overrides go through the CLI's own flag parsing (``ml_collections.config_flags``,
  on fresh flag values) and ``dfax.train.validate.check_config``.
* ``python benchmarks/NAME.py`` and ``python scripts/NAME.py``: the arguments go
  through the script's ``parse`` (its argparse parser); ``lm_depth.py``'s rows and
  levers are checked as well.

A renamed flag or field, a removed option or a bad value in a documented command fails
here, without running anything.
"""

from __future__ import annotations

import importlib.util
import pathlib
import re
import shlex
import sys

import pytest
from absl import flags
from ml_collections import config_flags

from dfax.train import validate

REPO = pathlib.Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def _fenced(text: str) -> tuple[list[tuple[str, str]], str]:
  """The page's fenced blocks as ``(language, body)``, and the page's text outside them."""
  blocks, outside, language, body = [], [], None, []
  for line in text.splitlines():
    fence = line.strip().startswith("```")
    if fence and language is None:
      language, body = line.strip()[3:].strip(), []
    elif fence:
      blocks.append((language, "\n".join(body)))
      language = None
    elif language is None:
      outside.append(line)
    else:
      body.append(line)
  return blocks, "\n".join(outside)


def _bash_lines(blocks: list[tuple[str, str]]):
  """The lines of the bash (or unlabelled) blocks, continuations joined, variables expanded.

  ``X="..."`` assignments in the block are expanded (``$X``, ``${X}``), and a loop's
  variable (``for seed in 0 1 2``) takes its first value.
  """
  for language, block in blocks:
    if language not in ("bash", "sh", ""):
      continue
    joined = block.replace("\\\n", " ")
    variables = dict(re.findall(r'^\s*(\w+)="([^"]*)"$', joined, flags=re.M))
    variables.update(re.findall(r"\bfor (\w+) in (\S+)", joined))
    for line in joined.splitlines():
      yield re.sub(r"\$\{?(\w+)\}?", lambda m: variables.get(m.group(1), m.group(0)), line)


def _inline_commands(prose: str):
  """The inline code spans of the prose that are commands (a span may wrap across lines)."""
  for span in re.findall(r"`([^`]+)`", " ".join(prose.split())):
    if span.startswith("python "):
      yield span


def documented_commands(program: str) -> list[tuple[str, list[str]]]:
  """``(page, argv)`` of every documented ``python <program> ...`` command.

  ``argv`` is what follows the program; ``<placeholder>`` arguments become ``X``.
  """
  commands = []
  for page in PAGES:
    blocks, prose = _fenced(page.read_text())
    for line in [*_bash_lines(blocks), *_inline_commands(prose)]:
      found = re.search(rf"python {re.escape(program)}(\s|$)", line)
      if found is None:
        continue
      command = line[found.start():].split("&&")[0]
      argv = shlex.split(re.sub(r"<[^>]+>", "X", command), comments=True)[1 + len(
          program.split()):]
      commands.append((page.name, [a for a in argv if a != "&"]))
  return commands


def _load(path: pathlib.Path):
  spec = importlib.util.spec_from_file_location(f"documented_{path.stem}", path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module  # its dataclasses look their module up there
  sys.path.insert(0, str(path.parent))  # the scripts import their neighbours
  try:
    spec.loader.exec_module(module)
  finally:
    sys.path.remove(str(path.parent))
  return module


def _config_file(argv: list[str]) -> str | None:
  for i, arg in enumerate(argv):
    if arg == "--config" and i + 1 < len(argv):
      return argv[i + 1]
    if arg.startswith("--config="):
      return arg.split("=", 1)[1]
  return None


# commands with a real config file (templates such as --config FILE are prose)
TRAIN_COMMANDS = [(page, argv) for page, argv in documented_commands("-m dfax.train")
                  if (REPO / str(_config_file(argv))).is_file()]
SCRIPTS = sorted({m.group(1) for page in PAGES for m in re.finditer(
    r"python ((?:benchmarks|scripts)/\w+\.py)", page.read_text())})


def _config_flags(argv: list[str]) -> list[str]:
  """The command's ``--config`` file and ``--config.FIELD=VALUE`` overrides."""
  kept, args = [], iter(argv)
  for arg in args:
    if arg == "--config" or (arg.startswith("--config.") and "=" not in arg):
      kept += [arg, next(args)]  # --config FILE, --config.FIELD VALUE
    elif arg.startswith(("--config=", "--config.")):
      kept.append(arg)
  return kept


def test_the_docs_give_commands():
  assert len(TRAIN_COMMANDS) >= 4, TRAIN_COMMANDS
  assert "benchmarks/lm_depth.py" in SCRIPTS and len(SCRIPTS) >= 10, SCRIPTS


@pytest.mark.parametrize("page, argv", TRAIN_COMMANDS,
                         ids=[f"{p}:{' '.join(a)}"[:100] for p, a in TRAIN_COMMANDS])
def test_documented_train_command_is_a_valid_config(page, argv, monkeypatch):
  monkeypatch.chdir(REPO)  # the docs' paths are relative to the repository root
  argv = ["dfax.train", *_config_flags(argv)]
  values = flags.FlagValues()  # the CLI's parsing, on flags of its own
  config_flags.DEFINE_config_file("config", None, "config file", flag_values=values,
                                  lock_config=True, sys_argv=argv)
  values(argv)
  validate.check_config(values.config)


@pytest.mark.parametrize("script", SCRIPTS)
def test_documented_script_commands_parse(script):
  commands = documented_commands(script)
  assert commands, script
  module = _load(REPO / script)
  for page, argv in commands:
    assert not any("$" in arg for arg in argv), (page, argv)
    args = module.parse(argv)  # argparse: SystemExit on an unknown flag or a bad value
    if script == "benchmarks/lm_depth.py":
      assert set(filter(None, args.rows.split(","))) <= set(module.ROWS), (page, argv)
      for lever in filter(None, args.levers.split(",")):
        module.with_lever(args, lever)  # SystemExit on an unknown lever


def test_lm_depth_has_most_of_the_depth_page_commands():
  assert len([1 for page, _ in documented_commands("benchmarks/lm_depth.py")
              if page == "depth.md"]) >= 10
