"""Structured (randomized Hadamard) vs dense keyed projection, n x n, one process.

  python benchmarks/hadamard_vs_dense.py --size 16384 --batch 64 [--json out.json]
  python benchmarks/hadamard_vs_dense.py --quick    # 1024 x 1024, batch 8: checks that it runs

Both regenerate their randomness from keys on every call, as in training (a
dense 16k x 16k float32 matrix would be 1 GiB per point if stored).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(__file__))
from timing import interleaved_medians  # noqa: E402

import dfax  # noqa: E402


def parse(argv=None) -> argparse.Namespace:
  """The command line's arguments."""
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--size", type=int, default=None, help="n (default 16384; 1024 quick)")
  parser.add_argument("--batch", type=int, default=None, help="error vectors (default 64; 8 quick)")
  parser.add_argument("--repeats", type=int, default=None, help="rounds (default 5; 3 quick)")
  parser.add_argument("--quick", action="store_true",
                      help="small sizes, 3 rounds: checks that it runs (no figures)")
  parser.add_argument("--json", default=None, help="also write the figures here")
  return parser.parse_args(argv)


def main(argv=None):
  args = parse(argv)
  args.size = args.size or (1024 if args.quick else 16384)
  args.batch = args.batch or (8 if args.quick else 64)
  args.repeats = args.repeats or (3 if args.quick else 5)
  error = jax.random.normal(jax.random.key(0), (args.batch, args.size))
  spec = [dfax.PointSpec("p/in", (args.batch, args.size), jnp.float32)]
  key = jax.random.key(1)
  dense = jax.jit(lambda e: dfax.projectors.gaussian(key)(e, spec)[0])
  structured = jax.jit(lambda e: dfax.projectors.hadamard(key)(e, spec)[0])
  t = interleaved_medians({"dense": lambda: dense(error), "hadamard": lambda: structured(error)},
                          repeats=args.repeats, warmup=1)
  print(f"dense    {1e3 * t['dense']:10.1f} ms\nhadamard {1e3 * t['hadamard']:10.1f} ms")
  print(f"hadamard speed-up = {t['dense'] / t['hadamard']:.1f}x  [{args.size}x{args.size}, "
        f"batch {args.batch}, {jax.default_backend()}]")
  result = {"size": args.size, "batch": args.batch, "quick": args.quick,
            "backend": jax.default_backend(), "ms": {k: 1e3 * v for k, v in t.items()},
            "hadamard_speedup": t["dense"] / t["hadamard"]}
  if args.json:
    with open(args.json, "w") as f:
      json.dump(result, f, indent=2)
  return result


if __name__ == "__main__":
  main()
