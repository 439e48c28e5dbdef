"""Every docstring example in dfax renders as code in the API reference.

mkdocstrings (google style, through griffe) renders ``>>>`` lines as code only inside an
``Examples:`` section; elsewhere they become nested Markdown blockquotes, and a reST
``Example::`` prints literally. This walks every docstring of the package, not only those
docs/api.md shows.
"""

import logging
import pathlib

import pytest

griffe = pytest.importorskip("griffe")

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _objects(obj):
  yield obj
  for member in obj.members.values():
    if member.is_alias:
      continue
    if member.is_module or member.is_class or member.is_function or member.is_attribute:
      yield from _objects(member)


def _problems():
  logging.getLogger("griffe").setLevel(logging.ERROR)  # missing-annotation notes: not ours
  package = griffe.load("dfax", search_paths=[str(ROOT)], docstring_parser="google")
  found = []
  for obj in _objects(package):
    doc = obj.docstring
    if doc is None:
      continue
    where = f"{obj.filepath.relative_to(ROOT)}:{doc.lineno} ({obj.path})"
    if "Example::" in doc.value or "Examples::" in doc.value:
      found.append(f"{where}: reST 'Example::'")
    with_prompts = [s for s in doc.parse("google")
                    if s.kind is not griffe.DocstringSectionKind.examples
                    and ">>>" in str(s.value)]
    if with_prompts:
      found.append(f"{where}: '>>>' outside an Examples: section")
  return found


def test_examples_render_as_code():
  assert _problems() == []


def test_the_check_finds_a_bad_docstring(tmp_path):
  # The check itself can fail: a module written the old way is reported.
  (tmp_path / "badpkg").mkdir()
  (tmp_path / "badpkg" / "__init__.py").write_text(
      'def f():\n  """Does f.\n\n  Example::\n\n    >>> f()\n  """\n')
  package = griffe.load("badpkg", search_paths=[str(tmp_path)], docstring_parser="google")
  doc = package["f"].docstring
  sections = doc.parse("google")
  assert "Example::" in doc.value
  assert all(s.kind is not griffe.DocstringSectionKind.examples for s in sections)
