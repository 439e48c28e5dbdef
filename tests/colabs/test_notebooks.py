"""Runs each notebook in colabs/ top to bottom (small mode) and checks what it shows.

Each notebook is executed with nbclient on the ``python3`` kernel with
``DFAX_NOTEBOOK_SMALL=1``: tiny sizes, one to two minutes each on two CPU cores.
Beyond "no cell raised", the checks read the printed results: a working DFA
must reach accuracies / losses that a broken one (no feedback, wrong sign, NaN)
does not. The install cell runs too: inside a clone it takes its local branch
and imports that clone's dfax, which the tests check from what it prints. The
language-model notebook runs from a copy of the source tree with no data
folder, as on a fresh machine; the Colab branch of the install cell (no clone,
dfax not installed) is run on its own, without installing anything.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

REPO = pathlib.Path(__file__).resolve().parents[2]
COLABS = REPO / "colabs"
CELL_TIMEOUT_S = 240
# What a clone needs to run the notebooks (the library with its shipped data, the notebooks,
# and the pyproject.toml by which the install cell recognises a clone).
TREE = ("pyproject.toml", "README.md", "LICENSE", "dfax", "colabs", "configs")


def execute(name: str, colabs: pathlib.Path = COLABS,
            data_dir: bool = True) -> tuple[str, int]:
  """Executes ``<colabs>/<name>`` in small mode; returns (all printed text, number of PNGs).

  ``data_dir=False`` runs it with ``DFAX_DATA_DIR`` unset, as on a fresh machine.
  """
  nb = nbformat.read(colabs / name, as_version=4)
  env = dict(os.environ, DFAX_NOTEBOOK_SMALL="1", MPLBACKEND="module://matplotlib_inline.backend_inline")
  env.pop("XLA_FLAGS", None)  # the test session's 8 fake host devices are not wanted here
  if not data_dir:
    env.pop("DFAX_DATA_DIR", None)
  client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=CELL_TIMEOUT_S,
                                   resources={"metadata": {"path": str(colabs)}})
  client.execute(env=env)
  texts, pngs = [], 0
  for cell in nb.cells:
    for out in cell.get("outputs", []):
      assert out.output_type != "error", f"{name}: {out.ename}: {out.evalue}"
      if out.output_type == "stream":
        texts.append(out.text)
      data = out.get("data", {})
      pngs += "image/png" in data
      texts.append(data.get("text/plain", ""))
  text = "".join(texts)
  # The install cell's local branch: the dfax of the clone the notebook sits in.
  assert f"from {colabs.parent.resolve() / 'dfax'}\n" in text, text[:2000]
  return text, pngs


def number(text: str, label: str) -> float:
  """The float printed after ``label`` (the last such line)."""
  found = re.findall(re.escape(label) + r"\s*(-?[0-9.]+(?:[eE][-+]?[0-9]+)?|nan)", text)
  assert found, f"no line with {label!r} in the notebook output:\n{text[-3000:]}"
  return float(found[-1])


def test_notebooks_have_no_stored_outputs():
  for path in sorted(COLABS.glob("*.ipynb")):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
      if cell.cell_type == "code":
        assert not cell.outputs and cell.execution_count is None, f"{path.name}: clear outputs"
    first_code = next(c.source for c in nb.cells if c.cell_type == "code")
    assert 'os.environ.get("DFAX_NOTEBOOK_SMALL"' in first_code, path.name
    # One install cell for all notebooks: a clone's dfax locally; in Colab this project
    # (never PyPI's unrelated `dfax`) from the URL the reader sets in DFAX_REPO_URL.
    assert first_code == install_cell(), f"{path.name}: its install cell differs from quickstart's"
    assert 'DFAX_REPO_URL = ""' in first_code and "REPO_OWNER" not in first_code, path.name
    assert "dfax-flax[train] @ " in first_code and '"install", "-q", "dfax"' not in first_code


def install_cell() -> str:
  nb = nbformat.read(COLABS / "quickstart.ipynb", as_version=4)
  return next(c.source for c in nb.cells if c.cell_type == "code")


def run_install_cell_without_dfax(tmp_path: pathlib.Path, url: str) -> subprocess.CompletedProcess:
  """Runs the install cell as in a fresh Colab runtime, pip replaced by a recorder.

  ``python -I -S`` hides site-packages (so ``dfax`` is not importable), the working
  folder is outside any clone, and ``subprocess.run`` only records the command.
  """
  source = install_cell().replace('DFAX_REPO_URL = ""', f"DFAX_REPO_URL = {url!r}", 1)
  driver = (
      "import json, subprocess, sys\n"
      "calls = []\n"
      "subprocess.run = lambda args, **kwargs: calls.append(list(args))\n"
      "try:\n"
      f"  exec(compile({source!r}, 'install_cell', 'exec'), {{}})\n"
      "finally:\n"
      "  print('CALLS', json.dumps(calls))\n")
  folder = tmp_path / "content"
  folder.mkdir()
  return subprocess.run([sys.executable, "-I", "-S", "-c", driver], cwd=folder, capture_output=True,
                        text=True, timeout=60)


def test_install_cell_in_colab_without_url(tmp_path):
  out = run_install_cell_without_dfax(tmp_path, "")
  assert out.returncode != 0
  last = out.stderr.strip().splitlines()[-1]
  assert last.startswith("RuntimeError: dfax is not installed") and "set DFAX_REPO_URL" in last
  assert "CALLS []" in out.stdout  # nothing was installed


def test_install_cell_in_colab_with_url(tmp_path):
  out = run_install_cell_without_dfax(tmp_path, "https://git.example/me/dfax.git")
  # pip is only recorded here, so the `import dfax` after it must fail.
  assert "ModuleNotFoundError: No module named 'dfax'" in out.stderr, out.stderr
  calls = json.loads(out.stdout.split("CALLS ", 1)[1])
  assert len(calls) == 1 and calls[0][1:] == [
      "-m", "pip", "install", "-q", "dfax-flax[train] @ git+https://git.example/me/dfax.git"]


@pytest.mark.slow
def test_quickstart():
  text, pngs = execute("quickstart.ipynb")
  assert pngs >= 2, "expected the accuracy curves and the alignment plot"
  bp = number(text, "final test accuracy: backprop")
  dfa = number(text, "final test accuracy: DFA")
  control = number(text, "final test accuracy: output layer only")
  assert bp > 0.85, bp
  # Only the output layer learning (zero feedback) reaches ~0.73 in small mode.
  assert dfa > 0.85, dfa
  assert dfa > control + 0.05, (dfa, control)
  # Hidden layers align with the true gradient during training (random would give ~0).
  assert number(text, "alignment Dense_0:") > 0.2
  assert number(text, "alignment Dense_1:") > 0.2
  assert number(text, "alignment Dense_2:") > 0.99  # the output layer's gradient is exact
  assert number(text, "one epoch of DFA: test accuracy") > 0.7


@pytest.mark.slow
def test_transformer_lm_in_a_fresh_copy(tmp_path):
  # A copy of the source tree (what a fresh clone holds), no ../shared beside it and no
  # DFAX_DATA_DIR: the notebook must use the copy's dfax and the corpus shipped inside it.
  clone = tmp_path / "dfax-clone"
  ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints")
  clone.mkdir()
  for name in TREE:
    source = REPO / name
    if source.is_dir():
      shutil.copytree(source, clone / name, ignore=ignore)
    else:
      shutil.copy2(source, clone / name)
  assert not (clone.parent / "shared").exists()
  text, pngs = execute("transformer_lm.ipynb", colabs=clone / "colabs", data_dir=False)
  assert "vocabulary: 84 characters; train 4,551,554 / val 505,728 tokens" in text
  assert pngs >= 1, "expected the validation-loss plot"
  unigram = number(text, "unigram entropy:")
  bp = number(text, "final val loss: backprop")
  dfa = number(text, "final val loss: DFA")
  assert bp < unigram - 0.5, (bp, unigram)
  assert dfa < unigram - 0.25, (dfa, unigram)  # uses context: below the unigram entropy
  control = number(text, "final val loss: control (zero feedback)")
  assert dfa < control - 0.1, (dfa, control)  # the random feedback trains the blocks
  assert "--- DFA ---\nROMEO:" in text  # a sample was printed


def test_simulated_opu_figure_gives_every_run_its_own_panel(monkeypatch):
  """The training figure of simulated_opu.ipynb, drawn from made-up histories (no training).

  Six of its seven runs end within a point or two of one another: on one axis their curves
  hid each other. Each run gets a panel, drawn over the digital projection in gray.
  """
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  import numpy as np

  nb = nbformat.read(COLABS / "simulated_opu.ipynb", as_version=4)
  (cell,) = [c.source for c in nb.cells if "def plot_runs(" in c.source]
  steps = [0, 50, 100, 150, 200]
  names = ["digital projection", "ideal OPU", "ternarization",
           "real-valued input + 8-bit camera", "ternarized + 4-bit camera",
           "ternarized + noise (100 photons)", "default device (all on)"]
  histories = {name: {"step": steps, "test_accuracy": [0.1, 0.8, 0.85, 0.88, 0.9 - i / 1000]}
               for i, name in enumerate(names)}  # ideal OPU and the reference all but equal
  monkeypatch.setattr(plt, "show", lambda: None)
  scope = {"histories": histories, "plt": plt, "np": np}
  exec(compile(cell, "simulated_opu.ipynb", "exec"), scope)
  fig = scope["fig"]
  (bars,) = [ax for ax in fig.axes if ax.patches]
  panels = [ax for ax in fig.axes if ax is not bars]
  drawn = {}
  for ax in panels:
    labels = [line.get_label() for line in ax.get_lines()]
    assert len(labels) == 2 and labels[0] == "digital projection", labels  # one run a panel
    assert ax.get_title() == labels[1]
    drawn[labels[1]] = ax.get_lines()[1]
  assert sorted(drawn) == sorted(names[1:])
  assert list(drawn["ideal OPU"].get_ydata()) == histories["ideal OPU"]["test_accuracy"]
  # The final accuracies, as differences from the digital projection's, in points.
  assert [t.get_text() for t in bars.get_yticklabels()] == names[1:]
  assert [p.get_width() for p in bars.patches] == pytest.approx([-0.1 * i for i in range(1, 7)])
  plt.close(fig)


@pytest.mark.slow
def test_simulated_opu():
  text, pngs = execute("simulated_opu.ipynb")
  assert pngs >= 2, "expected the fidelity plot and the training plot"
  assert number(text, "ideal OPU vs digital projection: max relative difference") < 1e-4
  assert number(text, "correlation, ternarization only (t=1):") > 0.7
  for run in ("digital projection", "ideal OPU", "default device (all on)"):
    assert number(text, f"final test accuracy [{run}]:") > 0.8, run
  assert "LM, per token" in text  # the cost table was printed
