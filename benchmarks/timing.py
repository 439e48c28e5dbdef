"""Interleaved wall-clock timing with medians, for ratios measured in one process."""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable, Mapping

import jax


def interleaved_medians(fns: Mapping[str, Callable[[], Any]], *, repeats: int = 20,
                        warmup: int = 2) -> dict[str, float]:
  """Median seconds per call of each function, runs interleaved round-robin.

  Interleaving spreads machine noise (other processes, frequency changes)
  evenly over the candidates, so their ratio is fair.

  Args:
    fns: name -> zero-argument callable returning JAX arrays (blocked on).
    repeats: timed rounds; each round calls every function once.
    warmup: untimed rounds first (compilation, caches).

  Returns:
    name -> median seconds.

  Example::

    t = interleaved_medians({"bp": lambda: bp(params, x), "dfa": lambda: dfa(params, x)})
    print(t["dfa"] / t["bp"])
  """
  for _ in range(warmup):
    for fn in fns.values():
      jax.block_until_ready(fn())
  samples: dict[str, list[float]] = {name: [] for name in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      start = time.perf_counter()
      jax.block_until_ready(fn())
      samples[name].append(time.perf_counter() - start)
  return {name: statistics.median(s) for name, s in samples.items()}
