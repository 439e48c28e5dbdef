"""Per-layer alignment figures and a results table for the vision runs (docs/results_vision.md).

  python scripts/vision_figures.py workdirs/vit10_afterln --alignment docs/figures/vit_after_ln_alignment.png
  python scripts/vision_figures.py workdirs/a workdirs/b --table

``--alignment PATH`` plots the cosine between each layer's DFA update and its
backprop gradient over the first run's steps (the trainer logs it every
``alignment_every`` steps); ``--table`` prints one markdown row per run (name,
method, feedback, test accuracy, steps, wall time) from each ``results.json``
and ``config.json``; ``--seeds`` prints mean ± std of the test accuracy over
all the runs given (e.g. three seeds of one command).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics

from dfax.train.metrics import read_metrics
from dfax.train.plots import plot_alignment


def _load(workdir: str, name: str) -> dict:
  with open(os.path.join(workdir, name)) as f:
    return json.load(f)


def table_row(workdir: str) -> str:
  """One markdown row for a finished run: name | method | feedback | accuracy | steps | wall."""
  res, cfg = _load(workdir, "results.json"), _load(workdir, "config.json")
  dfa = cfg.get("dfa", {})
  feedback = dfa.get("feedback") or "default"
  if res["method"] == "dfa" and dfa.get("projector") == "zeros":
    feedback += " (zero feedback)"
  return (f"| {os.path.basename(os.path.normpath(workdir))} | {res['method']} | {feedback} | "
          f"{100 * res['test_accuracy']:.2f}% | {res['steps']} | {res['wall_time_s']:.0f} s |")


def seeds_summary(workdirs: list[str]) -> str:
  """Mean ± sample std of the test accuracy (in %) over the runs."""
  accs = [100 * _load(w, "results.json")["test_accuracy"] for w in workdirs]
  std = statistics.stdev(accs) if len(accs) > 1 else 0.0
  return f"{statistics.mean(accs):.2f} ± {std:.2f}% over {len(accs)} runs"


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("workdirs", nargs="+")
  parser.add_argument("--alignment", default="", help="PNG path for the first run's alignment")
  parser.add_argument("--title", default="")
  parser.add_argument("--table", action="store_true")
  parser.add_argument("--seeds", action="store_true")
  args = parser.parse_args(argv)
  if args.alignment:
    rows = read_metrics(os.path.join(args.workdirs[0], "metrics.jsonl"))
    if not any("alignment" in r for r in rows):
      parser.error(f"{args.workdirs[0]} logged no alignment (a DFA run with alignment_every > 0)")
    plot_alignment(rows, args.alignment, title=args.title)
    print(f"wrote {args.alignment}")
  if args.table:
    print("| run | method | feedback | test accuracy | steps | wall |")
    print("|---|---|---|---|---|---|")
    for w in args.workdirs:
      print(table_row(w))
  if args.seeds:
    print(seeds_summary(args.workdirs))


if __name__ == "__main__":
  main()
