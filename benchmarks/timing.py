"""Interleaved wall-clock timing with medians, for ratios measured in one process."""

from __future__ import annotations

import random
import statistics
import time
from typing import Any, Callable, Mapping

import jax


def interleaved_samples(fns: Mapping[str, Callable[[], Any]], *, repeats: int = 20,
                        warmup: int = 2, seed: int = 0) -> dict[str, list[float]]:
  """Seconds per call of each function, over rounds that call every function once.

  Interleaving spreads machine noise (other processes, frequency changes)
  evenly over the candidates, and the order within a round is shuffled so
  that no candidate always runs right after the same (e.g. memory-heavy) one.

  Args:
    fns: name -> zero-argument callable returning JAX arrays (blocked on).
    repeats: timed rounds.
    warmup: untimed rounds first (compilation, caches).
    seed: seed of the per-round order.

  Returns:
    name -> list of ``repeats`` durations; index r of every list is round r.

  Example::

    s = interleaved_samples({"bp": lambda: bp(params, x), "dfa": lambda: dfa(params, x)})
    print(median_ratio(s, "dfa", "bp"))
  """
  for _ in range(warmup):
    for fn in fns.values():
      jax.block_until_ready(fn())
  order, rng = list(fns), random.Random(seed)
  samples: dict[str, list[float]] = {name: [] for name in fns}
  for _ in range(repeats):
    rng.shuffle(order)
    for name in order:
      start = time.perf_counter()
      jax.block_until_ready(fns[name]())
      samples[name].append(time.perf_counter() - start)
  return samples


def interleaved_medians(fns: Mapping[str, Callable[[], Any]], *, repeats: int = 20,
                        warmup: int = 2) -> dict[str, float]:
  """Median seconds per call of each function (see ``interleaved_samples``).

  Example::

    t = interleaved_medians({"bp": lambda: bp(params, x), "dfa": lambda: dfa(params, x)})
    print(t["dfa"] / t["bp"])
  """
  samples = interleaved_samples(fns, repeats=repeats, warmup=warmup)
  return {name: statistics.median(s) for name, s in samples.items()}


def median_ratio(samples: Mapping[str, list[float]], numerator: str, denominator: str) -> float:
  """Median over rounds of ``numerator / denominator`` timed in the same round.

  Paired within rounds, so slow phases of the machine cancel out.
  """
  return statistics.median(a / b for a, b in zip(samples[numerator], samples[denominator]))
