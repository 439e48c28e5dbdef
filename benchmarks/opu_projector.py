"""Simulated-OPU projector time against the digital projector, one process, medians.

  python benchmarks/opu_projector.py [--batch 128 --n-out 10 --widths 800,800] [--pieces]
                                     [--json out.json]
  python benchmarks/opu_projector.py --quick   # batch 16, widths 64,64, 3 rounds: checks it runs

Digital: ``dfax.projectors.shared`` (one Gaussian matmul sliced per point, the
same layout). OPU: ternarised error (two binary frames), complex medium,
anchor recovery (two camera frames each), 8-bit camera with shot/read noise.
Floor: the multiply-adds no faithful simulation can skip, the real and
imaginary fields of both binary frames (``(2N, n) @ (n, 2D)``, 4x the
digital matmul), on a medium drawn once, timed alone. ``--pieces`` also times
the simulator's parts one by one (each its own jitted call, so each carries a
call's overhead): the medium's draw, the anchor's, the frames' two matmuls,
the camera (anchor recovery with noise and quantisation) and the ternarisation.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(__file__))
from timing import interleaved_medians

import dfax
from dfax import opu
from dfax.opu import device


def parse(argv=None) -> argparse.Namespace:
  """The command line's arguments."""
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=None, help="default 128 (16 with --quick)")
  parser.add_argument("--n-out", type=int, default=10)
  parser.add_argument("--widths", default=None, help="default 800,800 (64,64 with --quick)")
  parser.add_argument("--repeats", type=int, default=None, help="default 30 (3 with --quick)")
  parser.add_argument("--pieces", action="store_true", help="time the simulator's parts too")
  parser.add_argument("--quick", action="store_true",
                      help="small sizes, 3 rounds: checks that it runs (no figures)")
  parser.add_argument("--json", default=None, help="also write the figures here")
  return parser.parse_args(argv)


def main(argv=None):
  args = parse(argv)
  args.batch = args.batch or (16 if args.quick else 128)
  args.widths = args.widths or ("64,64" if args.quick else "800,800")
  args.repeats = args.repeats or (3 if args.quick else 30)
  widths = [int(w) for w in args.widths.split(",")]
  points = [dfax.PointSpec(f"p{i}/in", (args.batch, w), jnp.float32)
            for i, w in enumerate(widths)]
  error = jax.random.normal(jax.random.key(0), (args.batch, args.n_out))
  key, noise = jax.random.key(1), jax.random.key(2)
  digital = jax.jit(lambda e: dfax.projectors.shared(key)(e, points))
  simulated = jax.jit(lambda e: opu.make_projector(opu.OPUConfig(), key=key,
                                                   noise_key=noise)(e, points))
  ideal = jax.jit(lambda e: opu.make_projector(opu.OPUConfig.ideal(), key=key)(e, points))
  frames = (jax.random.normal(key, (2 * args.batch, args.n_out)) > 1.0).astype(jnp.float32)
  medium = jax.random.normal(key, (args.n_out, 2 * sum(widths)))
  floor = jax.jit(lambda x, m: x @ m)
  fns = {"digital": lambda: digital(error), "opu": lambda: simulated(error),
         "opu_ideal": lambda: ideal(error), "floor": lambda: floor(frames, medium)}
  if args.pieces:
    fns.update(_pieces(error, frames, sum(widths), key))
  t = interleaved_medians(fns, repeats=args.repeats)
  for name, sec in t.items():
    print(f"{name:>9}: {1e3 * sec:8.3f} ms")
  print(f"simulated OPU / digital = {t['opu'] / t['digital']:.2f}  (ideal OPU / digital = "
        f"{t['opu_ideal'] / t['digital']:.2f}; frames' matmul alone / digital = "
        f"{t['floor'] / t['digital']:.2f})  [batch {args.batch}, error {args.n_out}, "
        f"widths {widths}, {jax.default_backend()}, jax {jax.__version__}]")
  result = {"batch": args.batch, "n_out": args.n_out, "widths": widths, "quick": args.quick,
            "backend": jax.default_backend(), "jax": jax.__version__,
            "ms": {k: 1e3 * v for k, v in t.items()},
            "opu_over_digital": t["opu"] / t["digital"],
            "opu_ideal_over_digital": t["opu_ideal"] / t["digital"],
            "floor_over_digital": t["floor"] / t["digital"]}
  if args.json:
    with open(args.json, "w") as f:
      json.dump(result, f, indent=2)
  return result


def _pieces(error, frames, total, key) -> dict:
  """The simulated pass's parts as separate jitted calls, on one tile of ``total`` columns."""
  config, n = opu.OPUConfig(), error.shape[-1]
  medium = device.medium_tile(key, n, total, jnp.float32)
  anchor = device.anchor_field(key, total, config, jnp.float32)
  draw = jax.jit(lambda k: device.medium_tile(k, n, total, jnp.float32))
  draw_anchor = jax.jit(lambda k: device.anchor_field(k, total, config, jnp.float32))
  fields = jax.jit(lambda x, m: (x @ m[0], x @ m[1]))
  re, im = fields(frames, medium)
  a_re, a_im = anchor
  a_abs = jnp.sqrt(a_re ** 2 + a_im ** 2)

  @jax.jit
  def camera(re, im, k):  # linear_tile after its matmuls
    keys = jax.random.split(k)
    with_anchor = device.camera((re + a_re) ** 2 + (im + a_im) ** 2, keys[0], config)
    alone = device.camera(re ** 2 + im ** 2, keys[1], config)
    return (with_anchor - alone - a_abs ** 2) / (2 * a_abs)

  ternarize = jax.jit(lambda e: device.ternarize(e, config))
  return {"medium": lambda: draw(key), "anchor": lambda: draw_anchor(key),
          "fields": lambda: fields(frames, medium), "camera": lambda: camera(re, im, key),
          "ternarize": lambda: ternarize(error)}


if __name__ == "__main__":
  main()
