"""Plot and tabulate several finished runs side by side (evaluation accuracy or loss vs step).

  python scripts/compare_runs.py workdirs/mnist_mlp_dfa workdirs/mnist_mlp_bp \
      workdirs/mnist_mlp_shallow --out mnist_mlp_methods.png
  python scripts/compare_runs.py workdirs/shakespeare_dfa workdirs/shakespeare_bp --metric loss

Prints a markdown table (run, method, accuracy and loss on the evaluation split, steps,
wall time) built from each workdir's results.json. The split is each run's own: test
for MNIST, MNIST-1D and CIFAR-10, val for Shakespeare (``dfax.train.metrics.eval_split``);
workdirs written before the split was named (``eval_accuracy`` rows) read the same.
"""

from __future__ import annotations

import argparse
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from dfax.train.metrics import eval_values, final_eval, read_metrics  # noqa: E402


def parse(argv=None) -> argparse.Namespace:
  """The command line's arguments."""
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("workdirs", nargs="+")
  parser.add_argument("--out", default="comparison.png")
  parser.add_argument("--metric", default="accuracy",
                      choices=["accuracy", "loss", "eval_accuracy", "eval_loss"],
                      help="the evaluation metric to plot, on each run's evaluation split "
                      "(test, or val for Shakespeare); eval_accuracy and eval_loss are older "
                      "names of the same")
  return parser.parse_args(argv)


def main(argv=None):
  args = parse(argv)
  metric = args.metric.removeprefix("eval_")
  fig, ax = plt.subplots(figsize=(6.5, 4))
  table, splits = [], set()
  for workdir in args.workdirs:
    name = os.path.basename(os.path.normpath(workdir))
    with open(os.path.join(workdir, "results.json")) as f:
      res = json.load(f)
    split, accuracy, loss = final_eval(res)
    splits.add(split)
    rows = [(r["step"], v[metric]) for r in read_metrics(os.path.join(workdir, "metrics.jsonl"))
            if (v := eval_values(r, split)) is not None and v[metric] is not None]
    scale = 100 if metric == "accuracy" else 1
    ax.plot([s for s, _ in rows], [scale * v for _, v in rows], "o-", ms=3, label=name)
    method = res["method"]
    changed = sorted({k for row in res.get("config_changes", []) for k in row["changes"]})
    if changed:  # a resumed run whose config was changed on purpose (changes.jsonl)
      method += f" (changed mid-run: {', '.join(changed)})"
    table.append(f"| {name} | {method} | {100 * accuracy:.2f}% | {loss:.4f} | {res['steps']} | "
                 f"{res['wall_time_s']:.0f} s |")
  split = splits.pop() if len(splits) == 1 else "eval"  # runs on different splits: say so
  print(f"| run | method | {split} accuracy | {split} loss | steps | wall time |")
  print("|---|---|---|---|---|---|")
  print("\n".join(table))
  ax.set(xlabel="step", ylabel=f"{split} accuracy (%)" if metric == "accuracy" else
         f"{split} loss")
  if metric == "accuracy":
    ax.set_ylim(bottom=max(0, ax.get_ylim()[0]))
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(args.out, dpi=110)
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
