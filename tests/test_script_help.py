"""Every command-line script in benchmarks/ and scripts/ answers ``--help``.

argparse formats the help only when asked, so a help string it cannot format
(a bare ``%`` in text built from a record) breaks ``--help`` and nothing else.
Each script runs in this process (``runpy``) with ``--help``: it must print its
usage and exit 0.
"""

from __future__ import annotations

import pathlib
import runpy
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SCRIPTS = sorted(path for folder in ("benchmarks", "scripts")
                 for path in (REPO / folder).glob("*.py")
                 if "ArgumentParser(" in path.read_text())


def test_the_scripts_are_found():
  names = {path.name for path in SCRIPTS}
  assert {"lm_depth.py", "step_time.py", "opu_lm_error.py"} <= names, names


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_help_prints_usage_and_exits_0(script, monkeypatch, capsys):
  monkeypatch.setattr(sys, "argv", [str(script), "--help"])
  monkeypatch.setattr(sys, "path", [str(script.parent), *sys.path])
  with pytest.raises(SystemExit) as exit_info:
    runpy.run_path(str(script), run_name="__main__")
  assert exit_info.value.code in (0, None), capsys.readouterr().err[-2000:]
  out = capsys.readouterr().out
  assert out.startswith("usage:") and "--help" in out, out[:500]
