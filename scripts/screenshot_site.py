"""Screenshots of the built docs site with headless Chromium, into docs/figures/site/.

  mkdocs build --strict --site-dir /tmp/site
  python scripts/screenshot_site.py /tmp/site

Needs `chromium` (Debian: apt-get install chromium) and Pillow. The pages load MathJax from a
CDN; with no network, a local MathJax 2 (Debian: apt-get install libjs-mathjax, found at
/usr/share/javascript/mathjax) is put in its place in a copy of the site, so the maths renders
offline. Each shot is 1280 x 1600 pixels.
"""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "figures" / "site"
CDN = "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"
LOCAL_MATHJAX = pathlib.Path("/usr/share/javascript/mathjax/MathJax.js")
MATHJAX2_CONFIG = """window.MathJax = {
  tex2jax: {inlineMath: [["\\\\(", "\\\\)"]], displayMath: [["\\\\[", "\\\\]"]],
            processEscapes: true, ignoreClass: ".*|", processClass: "arithmatex"}
};
"""
SHOTS = {  # name -> page (with an optional #anchor)
    "home": "index.html",
    "concepts": "concepts/index.html",
    "api_dfa_grad": "api/index.html#dfax.dfa_grad",
    "results": "results/index.html",
}
WIDTH, HEIGHT = 1280, 1600


def _offline_copy(site: pathlib.Path, tmp: pathlib.Path) -> pathlib.Path:
  copy = tmp / "site"
  shutil.copytree(site, copy)
  if LOCAL_MATHJAX.is_file():
    (copy / "javascripts" / "mathjax.js").write_text(MATHJAX2_CONFIG)
    for page in copy.rglob("*.html"):
      text = page.read_text(encoding="utf-8")
      if CDN in text:
        page.write_text(text.replace(CDN, f"{LOCAL_MATHJAX.as_uri()}?config=TeX-AMS_HTML"),
                        encoding="utf-8")
  return copy


def _shoot(url: str, path: pathlib.Path, height: int) -> None:
  subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--allow-file-access-from-files",
                  "--hide-scrollbars", "--virtual-time-budget=8000", f"--screenshot={path}",
                  f"--window-size={WIDTH},{height}", url],
                 check=True, capture_output=True, timeout=300)


def main(argv: list[str]) -> int:
  site = pathlib.Path(argv[0] if argv else "site").resolve()
  OUT.mkdir(parents=True, exist_ok=True)
  with tempfile.TemporaryDirectory() as tmp:
    copy = _offline_copy(site, pathlib.Path(tmp))
    for name, page in SHOTS.items():
      raw = pathlib.Path(tmp) / f"{name}.png"
      # An #anchor scrolls the page; headless Chromium then leaves the top of a
      # viewport-sized shot blank, so shoot twice as tall and crop from the first drawn row.
      tall = "#" in page
      _shoot((copy / page.split("#")[0]).as_uri() + ("#" + page.split("#")[1] if tall else ""),
             raw, 2 * HEIGHT + 200 if tall else HEIGHT)
      image = Image.open(raw).convert("RGB")
      top = 0
      if tall:
        drawn = np.where((np.asarray(image) < 250).any(axis=(1, 2)))[0]
        top = int(drawn[0]) if len(drawn) else 0
      image.crop((0, top, WIDTH, top + HEIGHT)).save(OUT / f"{name}.png", optimize=True)
      print(f"wrote {(OUT / f'{name}.png').relative_to(ROOT)}")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
