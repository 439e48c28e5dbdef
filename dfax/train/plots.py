"""PNG plots of learning curves and alignment, from metrics.jsonl rows.

Each PNG is written aside and renamed into place, so a kill never leaves a
half-written image.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import matplotlib
import numpy as np

from dfax.train import methods, metrics

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def run_plot_names(config) -> list[str]:
  """The PNGs a run of ``config`` writes into its workdir."""
  return ["curves.png"] + (["alignment.png"] if methods.get(config.method).logs_alignment
                           else [])


def plot_run(rows: Sequence[dict[str, Any]], workdir: str, config) -> list[str]:
  """Writes a run's plots (``run_plot_names``) from its metrics rows; returns their names."""
  title = f"{config.name} ({config.method})"
  plot_curves(rows, os.path.join(workdir, "curves.png"), title,
              split=metrics.eval_split(config.dataset.name))
  if methods.get(config.method).logs_alignment:
    plot_alignment(rows, os.path.join(workdir, "alignment.png"), title)
  return run_plot_names(config)


def plot_curves(rows: Sequence[dict[str, Any]], path: str, title: str = "", *,
                split: str = "test") -> Figure:
  """Train loss, and the evaluation split's loss and accuracy, against steps.

  ``split`` names the evaluated split (``metrics.eval_split``): its rows'
  ``<split>_loss`` and ``<split>_accuracy`` are drawn, and so are the
  ``eval_*`` rows of a workdir written before the split was named.

  Returns:
    The figure written to ``path`` (closed).
  """
  train = [r for r in rows if "train_loss" in r]
  evals = [(r["step"], v) for r in rows if (v := metrics.eval_values(r, split)) is not None]
  fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8))
  ax_loss.plot([r["step"] for r in train], [r["train_loss"] for r in train], label="train")
  ax_loss.plot([s for s, _ in evals], [_nan(v["loss"]) for _, v in evals], "o-", label=split)
  ax_loss.set(xlabel="step", ylabel="cross-entropy", yscale="log")
  ax_loss.legend()
  ax_acc.plot([s for s, _ in evals], [100 * _nan(v["accuracy"]) for _, v in evals], "o-")
  ax_acc.set(xlabel="step", ylabel=f"{split} accuracy (%)")
  fig.suptitle(title)
  fig.tight_layout()
  _save(fig, path)
  return fig


# A layer whose cosine stays this close to 1 gets the true gradient: the output layer (and
# whatever follows the last feedback point) trains on the true error, by construction.
EXACT = 1e-4


def plot_alignment(rows: Sequence[dict[str, Any]], path: str, title: str = "") -> Figure:
  """Per layer, the cosine between the DFA update and the backprop gradient.

  The layers that get the true gradient by construction (the output layer,
  and any that follow the last feedback point: their cosine is 1 at every
  logged step) are not drawn as curves of their own: one gray dotted line at
  1 names them, "1 by construction".

  Returns:
    The figure written to ``path`` (closed).
  """
  rows = [r for r in rows if "alignment" in r]
  fig, ax = plt.subplots(figsize=(6, 3.8))
  lowest = -0.2
  if rows:
    layers = list(rows[0]["alignment"])
    series = {layer: [_nan(r["alignment"].get(layer)) for r in rows] for layer in layers}
    exact = [layer for layer in layers if all(abs(c - 1.0) <= EXACT for c in series[layer])]
    steps = [r["step"] for r in rows]
    for layer in layers:
      if layer not in exact:
        ax.plot(steps, series[layer], label=layer)
        lowest = min(lowest, np.nanmin([*series[layer], np.inf]) - 0.05)
    if exact:
      what = "output layer" if len(exact) == 1 else "after the last feedback point"
      ax.axhline(1.0, color="gray", ls=":", lw=1.5,
                 label=f"{what} ({', '.join(exact)}): 1 by construction")
    ax.legend(fontsize=8)
  ax.axhline(0.0, color="gray", lw=0.5)
  ax.set(xlabel="step", ylabel="cos(DFA update, BP gradient)", ylim=(lowest, 1.05), title=title)
  fig.tight_layout()
  _save(fig, path)
  return fig


def _nan(value) -> float:
  """A metrics value as a float; None (a non-finite value, as metrics.jsonl holds it) -> nan."""
  return float("nan") if value is None else float(value)


def _save(fig, path: str) -> None:
  tmp = f"{path}.tmp.png"
  fig.savefig(tmp, dpi=110)
  plt.close(fig)
  os.replace(tmp, path)
