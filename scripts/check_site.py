"""Fails when a built docs page shows a docstring example that did not render as code.

  mkdocs build --strict --site-dir site && python scripts/check_site.py site

Checks every HTML page of the site for
  * a literal ``Example::`` / ``Examples::`` (a reST literal block mkdocstrings prints as text);
  * a blockquote inside a blockquote (``>>>`` lines read as Markdown quotes);
  * a paragraph that is only ``Example:``/``Examples:`` (a section griffe skipped, e.g. for a
    blank line under its title, whose code then renders as prose).
Exit status 1 and one line per problem, or 0.
"""

from __future__ import annotations

import html
import pathlib
import re
import sys

_TAGS = re.compile(r"<[^>]+>")
_CODE = re.compile(r"<(pre|code)\b.*?</\1>", re.S)
_CHECKS = (
    ("a literal 'Example::'", re.compile(r"Examples?::")),
    ("a nested blockquote (>>> read as Markdown)", re.compile(r"<blockquote>\s*<blockquote>")),
    ("an 'Example:' paragraph outside an examples section",
     re.compile(r"<p>\s*Examples?:\s*</p>")),
)


def problems(page: str) -> list[str]:
  """The checks one page's HTML fails, outside code blocks."""
  prose = _CODE.sub("", page)
  found = []
  for what, pattern in _CHECKS:
    for m in pattern.finditer(prose):
      context = html.unescape(_TAGS.sub(" ", prose[m.end():m.end() + 200]))
      found.append(f"{what}, before: {' '.join(context.split())[:80]!r}")
  return found


def main(argv: list[str]) -> int:
  site = pathlib.Path(argv[0] if argv else "site")
  pages = sorted(site.rglob("*.html"))
  if not pages:
    print(f"check_site: no HTML pages under {site}; build the site first.", file=sys.stderr)
    return 1
  bad = 0
  for page in pages:
    for problem in problems(page.read_text(encoding="utf-8")):
      print(f"{page.relative_to(site)}: {problem}", file=sys.stderr)
      bad += 1
  if bad:
    print(f"check_site: {bad} problem(s) in {len(pages)} pages.", file=sys.stderr)
    return 1
  print(f"check_site: {len(pages)} pages, no unrendered examples.")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
