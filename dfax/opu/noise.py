"""Cheap keyed camera noise: a counter hash and a sum of uniforms.

A camera frame needs one noise draw per pixel per example, several frames per
projection, so on CPU ``jax.random.normal`` (Threefry bits plus an inverse
error function) costs more than the whole simulated optics. Sensor noise does
not need a cryptographic generator: ``fast_normal`` hashes the pixel counter
with two 32-bit words drawn once from the key (reproducible, independent
across keys) and sums the four bytes of each hash (Irwin–Hall, n = 4). The
result has mean 0 and variance 1 exactly, a near-Gaussian shape (kurtosis
2.7 instead of 3) and tails cut at ±3.46σ, which is below the resolution of
an 8-bit camera whose noise is about one grey level. It is about 15× cheaper
than ``jax.random.normal`` on CPU. ``OPUConfig(fast_noise=False)`` draws
exact Gaussians instead.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

_BYTE_MEAN = 4 * 255 / 2
_BYTE_STD = math.sqrt(4 * (256 ** 2 - 1) / 12)


def _mix32(x: jax.Array) -> jax.Array:
  """A 32-bit integer finaliser with good avalanche (Wellons' "lowbias32")."""
  x = x ^ (x >> 16)
  x = x * jnp.uint32(0x7FEB352D)
  x = x ^ (x >> 15)
  x = x * jnp.uint32(0x846CA68B)
  return x ^ (x >> 16)


def fast_normal(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
  """Approximately standard normal samples, cheap and reproducible from ``key``.

  Args:
    key: a JAX PRNG key; the same key gives bitwise the same samples.
    shape: output shape (fewer than 2^32 elements).
    dtype: floating output dtype.

  Returns:
    Samples with mean 0, variance 1 and |z| <= 3.46 (see the module docstring).

  Examples:
    >>> noise = fast_normal(jax.random.key(0), (128, 1600))
    >>> noise.shape, noise.dtype
    ((128, 1600), dtype('float32'))
    >>> bool(abs(float(noise.std()) - 1.0) < 0.01)
    True
  """
  size = math.prod(shape)
  if size >= 2 ** 32:
    raise ValueError(f"fast_normal draws fewer than 2^32 samples per call, asked {shape}; "
                     "split the draw over several keys.")
  seed = jax.random.bits(key, (2,), jnp.uint32)
  counter = jax.lax.iota(jnp.uint32, size).reshape(shape)
  bits = _mix32(_mix32(counter ^ seed[0]) + seed[1])
  byte_sum = (bits & 255) + ((bits >> 8) & 255) + ((bits >> 16) & 255) + (bits >> 24)
  return ((byte_sum.astype(jnp.float32) - _BYTE_MEAN) / _BYTE_STD).astype(dtype)
