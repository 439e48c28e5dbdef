"""PNG plots of learning curves and alignment, from metrics.jsonl rows.

Each PNG is written aside and renamed into place, so a kill never leaves a
half-written image.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_curves(rows: Sequence[dict[str, Any]], path: str, title: str = "") -> None:
  """Train loss and eval accuracy/loss against steps."""
  train = [r for r in rows if "train_loss" in r]
  evals = [r for r in rows if "eval_accuracy" in r]
  fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8))
  ax_loss.plot([r["step"] for r in train], [r["train_loss"] for r in train], label="train")
  ax_loss.plot([r["step"] for r in evals], [r["eval_loss"] for r in evals], "o-", label="eval")
  ax_loss.set(xlabel="step", ylabel="cross-entropy", yscale="log")
  ax_loss.legend()
  ax_acc.plot([r["step"] for r in evals], [100 * r["eval_accuracy"] for r in evals], "o-")
  ax_acc.set(xlabel="step", ylabel="eval accuracy (%)")
  fig.suptitle(title)
  fig.tight_layout()
  _save(fig, path)


def plot_alignment(rows: Sequence[dict[str, Any]], path: str, title: str = "") -> None:
  """Per layer, the cosine between the DFA update and the backprop gradient."""
  rows = [r for r in rows if "alignment" in r]
  fig, ax = plt.subplots(figsize=(6, 3.8))
  lowest = -0.2
  if rows:
    for layer in rows[0]["alignment"]:
      cosines = [r["alignment"][layer] for r in rows]
      ax.plot([r["step"] for r in rows], cosines, label=layer)
      lowest = min(lowest, min(cosines) - 0.05)
    ax.legend(fontsize=8)
  ax.axhline(0.0, color="gray", lw=0.5)
  ax.set(xlabel="step", ylabel="cos(DFA update, BP gradient)", ylim=(lowest, 1.05), title=title)
  fig.tight_layout()
  _save(fig, path)


def _save(fig, path: str) -> None:
  tmp = f"{path}.tmp.png"
  fig.savefig(tmp, dpi=110)
  plt.close(fig)
  os.replace(tmp, path)
