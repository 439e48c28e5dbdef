"""From the cost model: optical vs GPU time per projection as the width grows.

  python benchmarks/opu_cost_plot.py --out opu_cost.png
  python benchmarks/opu_cost_plot.py --quick --out /tmp/opu_cost.png   # every 4th width only

Square projections (error size = feedback width = n), for several numbers of
error vectors per step. Assumptions are those of ``dfax.opu.cost.DeviceSpec``.
"""

from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from dfax import opu  # noqa: E402


def parse(argv=None) -> argparse.Namespace:
  """The command line's arguments."""
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default="opu_cost.png", help="the figure's path (a PNG)")
  parser.add_argument("--quick", action="store_true",
                      help="plot every 4th width (2^8, 2^12, ..., 2^20): checks that it runs")
  return parser.parse_args(argv)


def main(argv=None):
  args = parse(argv)
  sizes = [2 ** k for k in range(8, 21, 4 if args.quick else 1)]
  fig, ax = plt.subplots(figsize=(6.5, 4.2))
  for batch, color in ((1, "C0"), (32, "C1"), (512, "C2")):
    costs = [opu.estimate_cost(batch, n, n) for n in sizes]
    ax.loglog(sizes, [c.optical_time_s for c in costs], "-", color=color,
              label=f"OPU, {batch} vectors")
    ax.loglog(sizes, [c.gpu_time_s for c in costs], "--", color=color,
              label=f"GPU, {batch} vectors")
    cross = opu.crossover_width(batch)
    print(f"batch {batch:4d}: optical faster from n = {cross}" if cross else
          f"batch {batch:4d}: GPU faster up to the device limit (n = 2^20)")
    if cross:
      ax.axvline(cross, color=color, lw=0.6, ls=":")
  ax.set(xlabel="projection size n (error dims = feedback width)",
         ylabel="seconds per projection", title="Optical vs GPU random projection (cost model)")
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(args.out, dpi=110)
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
