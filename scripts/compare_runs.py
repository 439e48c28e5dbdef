"""Plot and tabulate several finished runs side by side (eval accuracy vs step).

  python scripts/compare_runs.py workdirs/mnist_mlp_dfa workdirs/mnist_mlp_bp \
      workdirs/mnist_mlp_shallow --out mnist_mlp_methods.png

Prints a markdown table (run, method, test accuracy, test loss, steps, wall time)
built from each workdir's results.json.
"""

from __future__ import annotations

import argparse
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from dfax.train.metrics import read_metrics  # noqa: E402


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("workdirs", nargs="+")
  parser.add_argument("--out", default="comparison.png")
  parser.add_argument("--metric", default="eval_accuracy", choices=["eval_accuracy", "eval_loss"])
  args = parser.parse_args(argv)
  fig, ax = plt.subplots(figsize=(6.5, 4))
  print("| run | method | test accuracy | test loss | steps | wall time |")
  print("|---|---|---|---|---|---|")
  for workdir in args.workdirs:
    name = os.path.basename(os.path.normpath(workdir))
    rows = [r for r in read_metrics(os.path.join(workdir, "metrics.jsonl")) if args.metric in r]
    scale = 100 if args.metric == "eval_accuracy" else 1
    ax.plot([r["step"] for r in rows], [scale * r[args.metric] for r in rows], "o-", ms=3,
            label=name)
    with open(os.path.join(workdir, "results.json")) as f:
      res = json.load(f)
    method = res["method"]
    changed = sorted({k for row in res.get("config_changes", []) for k in row["changes"]})
    if changed:  # a resumed run whose config was changed on purpose (changes.jsonl)
      method += f" (changed mid-run: {', '.join(changed)})"
    print(f"| {name} | {method} | {100 * res['test_accuracy']:.2f}% | "
          f"{res['test_loss']:.4f} | {res['steps']} | {res['wall_time_s']:.0f} s |")
  ax.set(xlabel="step", ylabel="test accuracy (%)" if args.metric == "eval_accuracy" else
         "validation loss")
  if args.metric == "eval_accuracy":
    ax.set_ylim(bottom=max(0, ax.get_ylim()[0]))
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(args.out, dpi=110)
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
