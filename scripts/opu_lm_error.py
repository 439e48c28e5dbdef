"""How the simulated OPU carries a language model's error, setting by setting.

Sends a near-uniform prediction's error (``--vocab`` symbols, as a character
LM's early in training) through the simulated OPU (8-bit camera, shot and read
noise: ``OPUConfig()``'s defaults) onto ``--points`` points of ``--width``
columns, and compares it with the ideal projection through the same effective
matrix (``dfax.opu.digital_reference``)::

  python scripts/opu_lm_error.py                      # every setting of SETTINGS
  python scripts/opu_lm_error.py --settings ternary,ternary_keep

Prints, per setting:

* the median and 10th-percentile cosine of a token's feedback with the ideal;
* the cosine of the wrong symbols' part (the feedback minus the ideal
  projection of the target's entry, against the ideal projection of the
  other symbols' probabilities): what tells the model which wrong symbols it
  predicts;
* the share of columns whose error exceeds their own RMS (mostly noise);
* the largest entry that comes back over the largest ideal entry.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

import dfax
from dfax.opu import OPUConfig, digital_reference, make_projector

SETTINGS = {  # name: (what it sends, OPUConfig changes)
    "ternary": ("one ternary pair per token (the default)", {}),
    "ternary_keep": ("the same, the half of the pixels with the strongest anchor",
                     {"anchor_keep": 0.5}),
    "bits1_keep": ("sign-separated 1-bit planes (two frames), strongest anchors",
                   {"input_bits": 1, "anchor_keep": 0.5}),
    "bits4_keep": ("sign-separated 4-bit planes (eight frames), strongest anchors",
                   {"input_bits": 4, "anchor_keep": 0.5}),
    "analog_keep": ("the real-valued error (an idealised analog input), strongest anchors",
                    {"ternarize": False, "anchor_keep": 0.5}),
}


def _cosine(a: jax.Array, b: jax.Array) -> jax.Array:
  return jnp.sum(a * b, -1) / (jnp.linalg.norm(a, axis=-1) * jnp.linalg.norm(b, axis=-1))


def fidelity(changes: dict, tokens: int = 1024, vocab: int = 65, points: int = 16,
             width: int = 128, seed: int = 0) -> dict:
  """The figures above for ``OPUConfig(**changes)`` on a near-uniform LM error."""
  logits = 0.3 * jax.random.normal(jax.random.key(seed), (tokens, vocab))
  target = jax.nn.one_hot(jax.random.randint(jax.random.key(seed + 1), (tokens,), 0, vocab),
                          vocab)
  error = (jax.nn.softmax(logits) - target) / tokens
  specs = [dfax.PointSpec(f"p{i}", (tokens, width), "float32") for i in range(points)]
  key = jax.random.key(seed + 3)
  ideal_of = lambda e: jnp.concatenate(digital_reference(key)(e, specs), -1)
  ideal, ideal_target = ideal_of(error), ideal_of(error * target)
  got = jnp.concatenate(make_projector(OPUConfig(**changes), key=key,
                                       noise_key=jax.random.key(seed + 9))(error, specs), -1)
  cosine = _cosine(got, ideal)
  column_error = jnp.sqrt(jnp.mean((got - ideal) ** 2, 0) / jnp.mean(ideal ** 2, 0))
  return {"cosine_median": float(jnp.median(cosine)),
          "cosine_p10": float(jnp.percentile(cosine, 10)),
          "wrong_symbols_cosine": float(jnp.median(_cosine(got - ideal_target,
                                                           ideal - ideal_target))),
          "noisy_columns": float(jnp.mean(column_error > 1)),
          "peak_ratio": float(jnp.abs(got).max() / jnp.abs(ideal).max())}


def parse(argv=None) -> argparse.Namespace:
  """The command line's arguments."""
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--settings", default=",".join(SETTINGS),
                 help="comma-separated, of: " + "; ".join(
                     f"{name} ({what})" for name, (what, _) in SETTINGS.items()))
  p.add_argument("--tokens", type=int, default=1024)
  p.add_argument("--vocab", type=int, default=65)
  p.add_argument("--points", type=int, default=16)
  p.add_argument("--width", type=int, default=128)
  return p.parse_args(argv)


def main(argv=None) -> dict[str, dict]:
  args = parse(argv)
  names = [n for n in args.settings.split(",") if n]
  unknown = sorted(set(names) - set(SETTINGS))
  if unknown:
    raise SystemExit(f"opu_lm_error.py: unknown settings {unknown}; choose from "
                     f"{','.join(SETTINGS)}")
  print(f"jax {jax.__version__}; {args.tokens} tokens x {args.vocab} symbols -> "
        f"{args.points} x {args.width} columns")
  print(f"{'setting':>13} {'cos median':>10} {'cos p10':>8} {'wrong syms':>10} "
        f"{'noisy cols':>10} {'peak':>6}")
  rows = {}
  for name in names:
    r = rows[name] = fidelity(SETTINGS[name][1], args.tokens, args.vocab, args.points,
                              args.width)
    print(f"{name:>13} {r['cosine_median']:>10.3f} {r['cosine_p10']:>8.3f} "
          f"{r['wrong_symbols_cosine']:>10.3f} {r['noisy_columns']:>10.2%} "
          f"{r['peak_ratio']:>5.2f}x")
  return rows


if __name__ == "__main__":
  main()
