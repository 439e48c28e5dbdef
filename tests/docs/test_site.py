"""The docs site builds strictly and shows every docstring example as code."""

import importlib.util
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _check_site():
  spec = importlib.util.spec_from_file_location("check_site", ROOT / "scripts" / "check_site.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_check_site_flags_unrendered_examples(tmp_path):
  check = _check_site()
  bad = ("<p>Example::</p>\n<blockquote>\n<blockquote>\n<blockquote>\n<p>import dfax</p>"
         "</blockquote></blockquote></blockquote>")
  assert len(check.problems(bad)) == 2
  assert check.problems("<p>Examples:</p><p>x = 1</p>")
  assert check.problems('<pre><code>Example:: inside code is fine</code></pre>') == []
  (tmp_path / "page.html").write_text(bad)
  assert check.main([str(tmp_path)]) == 1


def test_built_site_renders_examples_as_code(tmp_path):
  mkdocs = shutil.which("mkdocs", path=os.path.dirname(sys.executable)) or shutil.which("mkdocs")
  if mkdocs is None:
    pytest.skip("mkdocs is not installed (pip install -e '.[docs]')")
  site = tmp_path / "site"
  env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
  build = subprocess.run([mkdocs, "build", "--strict", "--site-dir", str(site)], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=600)
  assert build.returncode == 0, build.stderr[-3000:]
  check = _check_site()
  assert check.main([str(site)]) == 0
  api = (site / "api" / "index.html").read_text()
  section = api[api.index('id="dfax.dfa_grad"'):api.index('id="dfax.dfa_value_and_grad"')]
  assert '<span class="doc-section-title">Examples:</span>' in section
  assert '<span class="gp">&gt;&gt;&gt; </span>' in section   # a highlighted doctest prompt
  assert "<blockquote>" not in section
