"""Layer-parallel (vmapped) vs reverse-scan DFA backward of a cut scanned stack.

Usage:
  python benchmarks/layer_parallel.py                # sweep depth, batch, width
  python benchmarks/layer_parallel.py --quick --json out.json --figures docs/figures

Every block of a stack of ``L`` residual MLP blocks (``dfax.models.stack``)
is cut at its output and gets a fixed cotangent (in DFA: ``B_l e``). Three
ways compute the same gradients (forward included, jitted):

* ``reverse_scan``: ``jax.vjp`` of the cut scanned stack, as ``dfax.dfa_grad``
  runs it today: the backward is a reverse scan over the layers.
* ``scan``: ``LayerStack`` forward, then its stored pullbacks replayed by a
  reverse ``lax.scan`` (same arithmetic as ``vmap``, one layer at a time).
* ``vmap``: ``LayerStack`` forward, then all layers' pullbacks at once.

Ratios are medians of per-round ratios over interleaved rounds.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys

import jax

sys.path.insert(0, os.path.dirname(__file__))
from timing import interleaved_samples, median_ratio  # noqa: E402

from dfax.parallel.layer_parallel import LayerStack, reverse_scan_grads  # noqa: E402
from dfax.models.stack import StackConfig, StackedMLP, pipeline_parts  # noqa: E402

MODES = ("reverse_scan", "scan", "vmap")


def setup(layers: int, batch: int, d: int):
  config = StackConfig(d_in=d, d=d, d_ff=2 * d, num_stages=1, blocks_per_stage=layers,
                       cut="block")
  x = jax.random.normal(jax.random.key(0), (batch, d))
  params = jax.jit(StackedMLP(config).init)(jax.random.key(1), x)
  blocks = jax.tree.map(lambda a: a[0], params["params"]["stages"]["blocks"])
  cots = jax.random.normal(jax.random.key(2), (layers, batch, d))
  return pipeline_parts(config).block, blocks, x, cots


def grad_fns(block, params, x, cots) -> dict:
  def lp(mode):
    def fn(p, h, c):
      stack = LayerStack(block)
      _, stored = stack.forward(p, h)
      return stack.backward(p, stored, c, mode=mode)
    return jax.jit(fn)
  jitted = {"reverse_scan": jax.jit(lambda p, h, c: reverse_scan_grads(block, p, h, c)),
            "scan": lp("scan"), "vmap": lp("vmap")}
  return {k: (lambda f=f: f(params, x, cots)) for k, f in jitted.items()}


def run(layers_list, batch_list, width_list, repeats: int) -> list[dict]:
  rows = []
  for layers, batch, d in itertools.product(layers_list, batch_list, width_list):
    samples = interleaved_samples(grad_fns(*setup(layers, batch, d)), repeats=repeats)
    ms = {k: 1e3 * statistics.median(v) for k, v in samples.items()}
    row = {"L": layers, "batch": batch, "d": d, "ms": ms,
           "vmap_over_reverse_scan": median_ratio(samples, "vmap", "reverse_scan"),
           "vmap_over_scan": median_ratio(samples, "vmap", "scan")}
    rows.append(row)
    print(f"L={layers:3d} batch={batch:4d} d={d:4d}: " +
          "  ".join(f"{k} {v:7.3f} ms" for k, v in ms.items()) +
          f"  vmap/reverse_scan {row['vmap_over_reverse_scan']:.3f}"
          f"  vmap/scan {row['vmap_over_scan']:.3f}", flush=True)
  return rows


def figure(rows: list[dict], path: str) -> None:
  import matplotlib  # noqa: PLC0415
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # noqa: PLC0415
  fig, ax = plt.subplots(figsize=(6, 4))
  for i, (batch, d) in enumerate(sorted({(r["batch"], r["d"]) for r in rows})):
    pts = sorted((r["L"], r["vmap_over_reverse_scan"]) for r in rows
                 if (r["batch"], r["d"]) == (batch, d))
    ax.plot(*zip(*pts), marker="o", color=f"C{i}", label=f"batch {batch}, d {d}")
  ax.axhline(1.0, color="k", lw=0.8)
  ax.set_xscale("log", base=2)
  ax.set(xlabel="layers L", ylabel="time vmap / reverse scan (<1: vmap wins)",
         title=f"Layer-parallel DFA backward ({jax.default_backend()})")
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=120)


def parse(argv=None) -> argparse.Namespace:
  """The command line's arguments."""
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--repeats", type=int, default=15)
  parser.add_argument("--json", default=None)
  parser.add_argument("--figures", default=None, help="write pipeline_layer_parallel.png here")
  return parser.parse_args(argv)


def main(argv=None):
  args = parse(argv)
  if args.quick:
    rows = run((4,), (8,), (64,), repeats=3)
  else:
    rows = run((4, 16, 32), (8, 128), (64, 256), repeats=args.repeats)
  result = {"backend": jax.default_backend(), "jax": jax.__version__,
            "device_kind": jax.devices()[0].device_kind, "rows": rows}
  if args.figures:
    figure(rows, os.path.join(args.figures, "pipeline_layer_parallel.png"))
  if args.json:
    with open(args.json, "w") as f:
      json.dump(result, f, indent=2)
  return result


if __name__ == "__main__":
  main()
