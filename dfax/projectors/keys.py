"""Deterministic keys for feedback matrices: nothing stored, same everywhere.

Key derivations run under ``jax.ensure_compile_time_eval``: with a concrete
base key (the usual ``jax.random.key(seed)``) they are computed once while
tracing and enter the program as small constants, instead of a chain of
Threefry calls that would run on every step. The values are the same either
way; with a traced key they are staged as usual.
"""

from __future__ import annotations

import zlib

import jax
import jax.numpy as jnp


def path_key(key: jax.Array, path: str) -> jax.Array:
  """Folds a stable 31-bit hash of ``path`` into ``key``.

  ``zlib.crc32`` (unlike Python's ``hash``) is the same in every process, so
  a point gets the same matrix on every device and after every restart.

  Examples:
    >>> k = path_key(jax.random.key(0), "Dense_1/in")
  """
  with jax.ensure_compile_time_eval():
    return jax.random.fold_in(key, zlib.crc32(path.encode()) & 0x7FFFFFFF)


def copy_keys(key: jax.Array, num_copies: int) -> jax.Array:
  """One key per stacked copy of a point (e.g. per layer of an nn.scan)."""
  with jax.ensure_compile_time_eval():
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(num_copies))


def tile_key(key: jax.Array, index) -> jax.Array:
  """``fold_in(key, index)``, precomputed while tracing when both are concrete."""
  with jax.ensure_compile_time_eval():
    return jax.random.fold_in(key, index)
