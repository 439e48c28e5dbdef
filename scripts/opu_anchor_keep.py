"""How the simulated OPU's weak-anchor pixels degrade a language model's feedback.

Sends a near-uniform prediction's error (``--vocab`` symbols, as a character
LM's early on) through the default simulated OPU (ternarised, 8-bit camera,
shot and read noise) onto ``--points`` points of ``--width`` columns, with
each ``anchor_keep``, and compares it with the ideal projection through the
same effective matrix (``dfax.opu.digital_reference``)::

  python scripts/opu_anchor_keep.py                  # 1024 tokens, 65 symbols, 16 x 128
  python scripts/opu_anchor_keep.py --keep 1,0.5,0.25

Prints, per ``anchor_keep``: the median and 10th-percentile cosine of a
token's feedback with the ideal one, the share of columns whose error
exceeds their own RMS, and the largest entry that comes back over the
largest ideal entry.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

import dfax
from dfax.opu import OPUConfig, digital_reference, make_projector


def fidelity(anchor_keep: float, tokens: int = 1024, vocab: int = 65, points: int = 16,
             width: int = 128, seed: int = 0) -> dict:
  """Fidelity of the default simulated OPU with ``anchor_keep`` on a near-uniform LM error."""
  logits = 0.3 * jax.random.normal(jax.random.key(seed), (tokens, vocab))
  targets = jax.random.randint(jax.random.key(seed + 1), (tokens,), 0, vocab)
  error = (jax.nn.softmax(logits) - jax.nn.one_hot(targets, vocab)) / tokens
  specs = [dfax.PointSpec(f"p{i}", (tokens, width), "float32") for i in range(points)]
  key = jax.random.key(seed + 3)
  ideal = jnp.concatenate(digital_reference(key)(error, specs), -1)
  got = jnp.concatenate(make_projector(OPUConfig(anchor_keep=anchor_keep), key=key,
                                       noise_key=jax.random.key(seed + 9))(error, specs), -1)
  cosine = jnp.sum(got * ideal, -1) / (jnp.linalg.norm(got, axis=-1)
                                       * jnp.linalg.norm(ideal, axis=-1))
  column_error = jnp.sqrt(jnp.mean((got - ideal) ** 2, 0) / jnp.mean(ideal ** 2, 0))
  return {"anchor_keep": anchor_keep,
          "cosine_median": float(jnp.median(cosine)),
          "cosine_p10": float(jnp.percentile(cosine, 10)),
          "noisy_columns": float(jnp.mean(column_error > 1)),
          "peak_ratio": float(jnp.abs(got).max() / jnp.abs(ideal).max())}


def main(argv=None) -> list[dict]:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--keep", default="1,0.5", help="comma-separated anchor_keep values")
  p.add_argument("--tokens", type=int, default=1024)
  p.add_argument("--vocab", type=int, default=65)
  p.add_argument("--points", type=int, default=16)
  p.add_argument("--width", type=int, default=128)
  args = p.parse_args(argv)
  rows = [fidelity(float(q), args.tokens, args.vocab, args.points, args.width)
          for q in args.keep.split(",")]
  print(f"jax {jax.__version__}; {args.tokens} tokens x {args.vocab} symbols -> "
        f"{args.points} x {args.width} columns")
  for r in rows:
    print(f"anchor_keep {r['anchor_keep']:<5g} cosine median {r['cosine_median']:.3f} "
          f"p10 {r['cosine_p10']:.3f}  noisy columns {r['noisy_columns']:.2%}  "
          f"peak {r['peak_ratio']:.2f}x the ideal")
  return rows


if __name__ == "__main__":
  main()
