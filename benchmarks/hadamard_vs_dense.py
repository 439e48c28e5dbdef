"""Structured (randomized Hadamard) vs dense keyed projection, n x n, one process.

  python benchmarks/hadamard_vs_dense.py --size 16384 --batch 64

Both regenerate their randomness from keys on every call, as in training (a
dense 16k x 16k float32 matrix would be 1 GiB per point if stored).
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(__file__))
from timing import interleaved_medians  # noqa: E402

import dfax  # noqa: E402


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--size", type=int, default=16384)
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args(argv)
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


if __name__ == "__main__":
  main()
