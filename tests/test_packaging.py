"""Packaging: the version, the licence, the citation, the changelog and the constraints."""

import importlib.metadata
import pathlib
import re
import subprocess
import sys
import tomllib

import pytest

import dfax

REPO = pathlib.Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def test_version_is_the_installed_metadata():
  assert dfax.__version__ == importlib.metadata.version("dfax-flax")
  assert dfax.__version__ == PYPROJECT["project"]["version"]  # the editable install is current


def test_version_without_metadata():
  # A source tree that was never pip-installed has no metadata: a PEP 440 local "unknown".
  code = ("import importlib.metadata as m\n"
          "def missing(name):\n"
          "  raise m.PackageNotFoundError(name)\n"
          "m.version = missing\n"
          "import dfax\n"
          "print(dfax.__version__)\n")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       cwd=REPO)
  assert out.stdout.strip() == "0+unknown"


def test_requires_python_is_what_jax_needs():
  assert PYPROJECT["project"]["requires-python"] == ">=3.11"
  jax_needs = importlib.metadata.metadata("jax")["Requires-Python"]  # e.g. ">=3.11"
  minimum = re.fullmatch(r"\s*>=\s*3\.(\d+)\s*", jax_needs)
  assert minimum and int(minimum.group(1)) >= 11, jax_needs  # no jax here runs on 3.10


def test_license_file_is_apache_2():
  text = (REPO / "LICENSE").read_text(encoding="utf-8")
  assert PYPROJECT["project"]["license"] == "Apache-2.0"
  assert "Apache License\n                           Version 2.0, January 2004" in text
  assert "END OF TERMS AND CONDITIONS" in text and "APPENDIX: How to apply" in text
  sections = re.findall(r"^   (\d)\. [A-Z]", text, flags=re.MULTILINE)
  assert sections == [str(i) for i in range(1, 10)], sections  # the nine sections, none cut


def test_citation_cff():
  yaml = pytest.importorskip("yaml")
  cff = yaml.safe_load((REPO / "CITATION.cff").read_text(encoding="utf-8"))
  assert cff["cff-version"] == "1.2.0"
  assert cff["version"] == PYPROJECT["project"]["version"]
  assert cff["license"] == PYPROJECT["project"]["license"]
  cited = {ident["value"] for ref in cff["references"] for ident in ref["identifiers"]}
  assert cited == {"arXiv:2409.12965", "arXiv:2006.12878", "arXiv:1609.01596"}
  for ref in cff["references"]:
    assert ref["title"] and ref["year"] and ref["authors"], ref


def test_changelog_has_this_version():
  text = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
  assert "## [Unreleased]" in text
  assert f"## [{PYPROJECT['project']['version']}]" in text


def test_constraints_pin_the_documented_versions():
  pins = {}
  for line in (REPO / "constraints.txt").read_text(encoding="utf-8").splitlines():
    if line.strip() and not line.startswith("#"):
      name, _, version = line.partition("==")
      assert version, f"constraints.txt: {line!r} is not an exact pin"
      pins[name.lower().replace("_", "-")] = version
  assert "dfax-flax" not in pins  # the project itself is installed from the clone
  assert pins["jax"] == pins["jaxlib"] == "0.10.2" and pins["flax"] == "0.12.8"
  for name in ("optax", "orbax-checkpoint", "numpy", "scipy", "ml-collections",
               "tensorflow-datasets", "transformers"):
    assert name in pins, name
