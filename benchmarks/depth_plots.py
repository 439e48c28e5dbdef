"""The depth benchmark's figures, from ``depth_report``'s results.

``plot_depths`` draws each row's loss against depth over seeds, ``plot_hybrid_curve``
the loss against the number of blocks trained by backprop, ``plot_levers`` each
lever's gap closure. Each saves a PNG and imports matplotlib only when called.
"""

from __future__ import annotations

from typing import Callable

from depth_report import baseline_settings, hybrid_curve, loss_and_std

# The rows of the depth figure, drawn in this order, with their legend labels.
DEPTH_ROWS = {"bp": "backprop", "dfa": "DFA", "last_block": "last-block control",
              "zero": "zero-feedback control"}


def _pyplot():
  import matplotlib  # noqa: PLC0415
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # noqa: PLC0415
  return plt


def plot_depths(out: dict, path: str) -> None:
  """Each row's validation loss against depth, mean ± sample std over seeds.

  Args:
    out: ``across_seeds``'s result (``--seeds``), with rows at one or more depths.
    path: where the PNG goes.
  """
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(6, 4))
  depths = sorted(out["depths"], key=int)
  for row, label in DEPTH_ROWS.items():
    points = [(int(d), out["depths"][d]["rows"][row]) for d in depths
              if row in out["depths"][d]["rows"]]
    if not points:
      continue
    xs = [d for d, _ in points]
    ax.errorbar(xs, [f["mean"] for _, f in points], yerr=[f["std"] or 0.0 for _, f in points],
                fmt="o-", capsize=3, label=label)
  ax.set_xticks([int(d) for d in depths])
  ax.set_xlabel("blocks")
  ax.set_ylabel("validation loss (nats/char)")
  seeds = ", ".join(map(str, out["seeds"]))
  title = f"Loss against depth, mean ± std over seeds {seeds}"
  if "baseline" in out:
    title += "\nbackprop at " + baseline_settings(out)
  ax.set_title(title, fontsize=9)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def share_label(share: float | None) -> str:
  """A hybrid point's label: its share of backward FLOPs still by backprop.

  Examples:
    >>> share_label(0.0063), share_label(0.2547), share_label(None)
    ('0.6%', '25%', 'head only')
  """
  if share is None:
    return "head only"
  return f"{share:.1%}" if share < 0.1 else f"{share:.0%}"


def plot_hybrid_curve(out: dict, path: str) -> None:
  """Validation loss against the number of blocks trained by backprop, per depth.

  Args:
    out: one seed's rows (a run or ``--merge``), or ``across_seeds``'s result
      (``--seeds``): then each point is the mean over seeds, with the sample std as
      its error bar, and the controls' lines are their means.
    path: where the PNG goes.
  """
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(6, 4.5))
  for depth, result in out["depths"].items():
    curve = hybrid_curve(result["rows"], int(depth))
    if not curve:
      continue
    ks, losses, stds, _ = zip(*curve)
    ax.errorbar(ks, losses, yerr=[std or 0.0 for std in stds], fmt="o-", capsize=3,
                label=f"{depth} blocks")
    for k, loss, _, share in curve:
      ax.annotate(share_label(share), (k, loss), textcoords="offset points", xytext=(4, 4),
                  fontsize=8)
    for row, style in (("zero", ":"), ("last_block", "--")):
      if row in result["rows"]:
        ax.axhline(loss_and_std(result["rows"][row])[0], ls=style, c="gray")
  ax.set_xlabel("K: last blocks trained by backprop (0: DFA, all: backprop)")
  ax.set_ylabel("validation loss (nats/char)")
  drawn = {row for result in out["depths"].values() for row in result["rows"]}
  lines = [text for row, text in (("zero", "dotted: zero-feedback control"),
                                  ("last_block", "dashed: last-block control")) if row in drawn]
  if "seeds" in out:
    lines.append("mean ± sample std over seeds " + ", ".join(map(str, out["seeds"])))
  if "baseline" in out:
    lines.append("K=all: backprop at " + baseline_settings(out))
  ax.set_title("\n".join(["Hybrid DFA/backprop; labels: backward FLOPs still by backprop",
                          *lines]), fontsize=9)
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def plot_levers(out: dict, path: str,
                through_opu: Callable[[str], bool] = lambda lever: False) -> None:
  """Each lever's gap closure against the default DFA row's, one panel per depth.

  ``through_opu(lever)`` says which bars to draw orange (the levers through the OPU).
  """
  plt = _pyplot()
  depths = [(d, r) for d, r in out["depths"].items() if r.get("levers")]
  fig, axes = plt.subplots(1, max(len(depths), 1), figsize=(6 * max(len(depths), 1), 5),
                           squeeze=False)
  for ax, (depth, result) in zip(axes[0], depths):
    levers = sorted(result["levers"].items(), key=lambda item: -item[1])  # best first
    names = ["(default)"] + [name for name, _ in levers]
    closures = [result["gap_closure"]] + [closure for _, closure in levers]
    colors = ["tab:gray"] + ["tab:orange" if through_opu(name) else "tab:blue"
                             for name, _ in levers]
    ax.barh(names[::-1], closures[::-1], color=colors[::-1])
    ax.axvline(result["gap_closure"], ls=":", c="gray")
    ax.set_xlabel("gap closure (0: zero-feedback control, 1: backprop)")
    ax.set_title(f"{depth} blocks: DFA with levers changed\n(orange: through the simulated OPU)",
                 fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
