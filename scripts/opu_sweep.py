"""Accuracy of DFA through the simulated OPU against camera bits, noise and threshold.

  python scripts/opu_sweep.py --out opu_sweep.png [--epochs 1 --features 128,128]

Starts from the default device (ternarised, 8-bit, photons_per_unit=2000) and
varies one setting at a time, plus the digital projection as reference; each
point is a full training run of the same MLP with the same seed and budget.
Writes the PNG and a JSON of every run next to it.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import tempfile

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from dfax.train.config_file import load_config  # noqa: E402
from dfax.train.trainer import train_and_evaluate  # noqa: E402

CONFIG = pathlib.Path(__file__).resolve().parents[1] / "configs" / "mnist_mlp.py"
SWEEPS = {"bits": [2, 4, 8], "photons_per_unit": [5.0, 50.0, 5000.0],
          "threshold": [0.25, 1.0, 2.0]}


def run(overrides: dict, args) -> float:
  config = load_config(CONFIG, num_epochs=args.epochs, progress_bar=False,
                       alignment_every=0, eval_every=10**9,
                       **{"model.features": tuple(args.features), "dataset.augment_shift": 0},
                       **overrides)
  with tempfile.TemporaryDirectory() as workdir:
    return train_and_evaluate(config, workdir)["test_accuracy"]


def parse(argv=None) -> argparse.Namespace:
  """The command line's arguments."""
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default="opu_sweep.png")
  parser.add_argument("--epochs", type=int, default=1)
  parser.add_argument("--features", default="128,128")
  return parser.parse_args(argv)


def main(argv=None):
  args = parse(argv)
  args.features = [int(f) for f in args.features.split(",")]
  results = {"digital": run({"dfa.projector": "gaussian"}, args)}
  print(f"digital projection: {100 * results['digital']:.2f}%", flush=True)
  for setting, values in SWEEPS.items():
    for value in values:
      acc = run({"dfa.projector": "opu", f"dfa.opu.{setting}": value}, args)
      results[f"{setting}={value}"] = acc
      print(f"OPU {setting}={value}: {100 * acc:.2f}%", flush=True)
  fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), sharey=True)
  for ax, (setting, values) in zip(axes, SWEEPS.items()):
    ax.plot(values, [100 * results[f"{setting}={v}"] for v in values], "o-", label="OPU")
    ax.axhline(100 * results["digital"], color="gray", ls="--", label="digital")
    ax.set(xlabel=setting, xscale="log" if setting == "photons_per_unit" else "linear")
  axes[0].set_ylabel("test accuracy (%)")
  axes[0].legend()
  fig.suptitle(f"DFA through the simulated OPU (MLP {args.features}, {args.epochs} epochs)")
  fig.tight_layout()
  fig.savefig(args.out, dpi=110)
  with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
    json.dump(results, f, indent=2)
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
