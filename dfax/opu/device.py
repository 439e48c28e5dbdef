"""The physics of one OPU pass: binary input, random medium, camera, recovery.

Every function is pure; randomness comes from explicit keys, so the same keys
give bitwise the same frames.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp

from dfax.opu.config import OPUConfig
from dfax.opu.noise import fast_normal


def ternarize(error2d: jax.Array, config: OPUConfig) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Per-example ternarisation into two binary frames and a magnitude.

  Args:
    error2d: ``(N, n)`` signed error.
    config: threshold (multiple of the per-example std) or topk fraction.

  Returns:
    ``(e_plus, e_minus, magnitude)``: binary ``(N, n)`` frames with
    ``e_plus - e_minus`` the ternary error (signs kept), and ``(N, 1)`` the
    mean |e| over the entries sent, so ``magnitude * (e_plus - e_minus)``
    approximates the error.
  """
  absval = jnp.abs(error2d)
  if config.topk is not None:
    k = max(1, int(round(config.topk * error2d.shape[-1])))
    t = jax.lax.top_k(absval, k)[0][:, -1:]
    on = absval >= t
  else:
    t = config.threshold * jnp.std(error2d, axis=-1, keepdims=True)
    on = absval > t
  on = on & (absval > 0)
  count = jnp.maximum(on.sum(-1, keepdims=True), 1)
  magnitude = jnp.where(on, absval, 0).sum(-1, keepdims=True) / count
  e_plus = (on & (error2d > 0)).astype(error2d.dtype)
  e_minus = (on & (error2d < 0)).astype(error2d.dtype)
  return e_plus, e_minus, magnitude


def bit_planes(error2d: jax.Array, bits: int) -> tuple[jax.Array, jax.Array]:
  """Sign-separated bit planes of each row, and each row's two scales.

  Args:
    error2d: ``(N, n)`` signed error.
    bits: bits per sign.

  Returns:
    ``(planes, scales)``: binary ``(2, bits, N, n)`` frames (positive part
    first, most significant bit first) and ``(2, N, 1)`` scales such that
    ``sum_k 2^(bits-1-k) * planes[s, k] * scales[s]`` is the part ``s``
    quantised to ``bits`` bits of its own peak.

  Examples:
    >>> planes, scales = bit_planes(jnp.array([[0.75, -0.5, 0.25]]), 2)
    >>> planes[0, :, 0], planes[1, :, 0]   # 0.75 -> 3, 0.25 -> 1; -0.5 -> 3 of its own peak
    (Array([[1., 0., 0.],
           [1., 0., 1.]], dtype=float32), Array([[0., 1., 0.],
           [0., 1., 0.]], dtype=float32))
  """
  levels = 2 ** bits - 1
  parts = jnp.stack([jnp.maximum(error2d, 0), jnp.maximum(-error2d, 0)])
  peak = jnp.max(parts, axis=-1, keepdims=True)
  code = jnp.round(parts / jnp.where(peak > 0, peak, 1) * levels).astype(jnp.int32)
  planes = jnp.stack([(code >> (bits - 1 - k)) & 1 for k in range(bits)], axis=1)
  return planes.astype(error2d.dtype), peak / levels


def through_analog_frames(rows: jax.Array,
                          linear: Callable[[jax.Array], jax.Array]) -> jax.Array:
  """A signed error through an analog input device: each row scaled to its full range.

  Each row is divided by its largest magnitude (sent digitally, as the
  ternarised error's magnitude is), so the frame uses the input's range
  whatever the error's scale, and the projection is scaled back.

  Examples:
    >>> through_analog_frames(jnp.array([[2e-4, -1e-4]]), lambda f: f * 10)
    Array([[ 0.002, -0.001]], dtype=float32)
  """
  peak = jnp.max(jnp.abs(rows), axis=-1, keepdims=True)
  peak = jnp.where(peak > 0, peak, 1)
  return (linear(rows / peak) * peak).astype(rows.dtype)


def through_binary_frames(rows: jax.Array, config: OPUConfig,
                          linear: Callable[[jax.Array], jax.Array]) -> jax.Array:
  """A signed error through a binary-input device: ternarise, one pass, recombine.

  The rows become two binary frames (``ternarize``); ``linear`` sends both
  frames through the device in one pass; the difference of the two
  projections, times each row's magnitude, approximates the projection of
  the error. With ``config.input_bits`` the rows become sign-separated bit
  planes (``bit_planes``), all sent in one pass, recombined by their weights.

  Args:
    rows: ``(N, n)`` signed error rows.
    config: the ternarisation settings.
    linear: ``(F N, n) frames -> (F N, width)`` linear projections (the
      simulated medium, or a real device behind a callback), with
      ``F = config.frames_per_row``.

  Returns:
    ``(N, width)``, in the rows' dtype.

  Examples:
    >>> rows = jnp.array([[2.0, -2.0, 0.1]])
    >>> through_binary_frames(rows, OPUConfig(threshold=0.5), lambda f: f)
    Array([[ 2., -2.,  0.]], dtype=float32)
  """
  batch = rows.shape[0]
  if config.input_bits is not None:
    bits = config.input_bits
    planes, scales = bit_planes(rows, bits)
    lin = linear(planes.reshape(2 * bits * batch, -1))  # every plane in one device pass
    lin = lin.reshape(2, bits, batch, -1)
    weights = (2.0 ** jnp.arange(bits - 1, -1, -1)).astype(lin.dtype)
    parts = jnp.einsum("k,skbw->sbw", weights, lin) * scales
    return (parts[0] - parts[1]).astype(rows.dtype)
  e_plus, e_minus, magnitude = ternarize(rows, config)
  lin = linear(jnp.concatenate([e_plus, e_minus]))  # both frames in one device pass
  return ((lin[:batch] - lin[batch:]) * magnitude).astype(rows.dtype)


def medium_tile(key: jax.Array, n: int, cols: int, dtype) -> tuple[jax.Array, jax.Array]:
  """Re and Im of one column tile of the transmission matrix, entries N(0, 1/n)."""
  k_re, k_im = jax.random.split(key)
  scale = jnp.asarray(1.0 / jnp.sqrt(n), dtype)
  return (jax.random.normal(k_re, (n, cols), dtype) * scale,
          jax.random.normal(k_im, (n, cols), dtype) * scale)


ANCHOR_DRAWS = 2


def anchor_field(key: jax.Array, cols: int, config: OPUConfig, dtype) -> tuple[jax.Array, jax.Array]:
  """The reference field per camera pixel: fixed, complex, of set amplitude.

  The anchor is a patch of always-on input pixels; its field on each camera
  pixel is the sum of their medium responses, a complex Gaussian with Re and
  Im ~ N(0, amplitude^2 / 2) whatever the patch size. It is drawn as the sum of
  ``ANCHOR_DRAWS`` scaled normals per pixel and part (the same distribution as
  a larger patch, for fewer draws). Forming that sum as a matmul keeps XLA
  from fusing the Gaussian draws into the per-example camera arithmetic, where
  they would be redrawn once per example and frame (``optimization_barrier``
  does not survive XLA:CPU's passes).
  """
  fields = jax.random.normal(key, (2, ANCHOR_DRAWS, cols), dtype)
  patch = jnp.full((ANCHOR_DRAWS,), config.anchor_amplitude / math.sqrt(2 * ANCHOR_DRAWS),
                   dtype)
  re, im = jnp.einsum("k,rkc->rc", patch, fields, precision=jax.lax.Precision.HIGHEST)
  if config.anchor_keep < 1.0:
    # The kept pixels' anchor intensities are the top anchor_keep fraction of an exponential
    # law; by its memorylessness, that is the floor -mean*ln(keep) plus a fresh draw. The phase
    # (and so the effective matrix) is unchanged.
    power = re ** 2 + im ** 2
    floor = -config.anchor_amplitude ** 2 * math.log(config.anchor_keep)
    factor = jnp.sqrt((power + floor) / jnp.maximum(power, jnp.finfo(dtype).tiny))
    re, im = re * factor, im * factor
  return re, im


def camera(intensity: jax.Array, noise_key: jax.Array | None, config: OPUConfig) -> jax.Array:
  """What the camera reads: shot and read noise, saturation, b-bit quantisation."""
  if config.noise:
    # Shot (Gaussian approximation of Poisson) and read noise are independent
    # and Gaussian, so one draw with the summed variance is the same model.
    variance = (jnp.maximum(intensity, 0) / config.photons_per_unit
                + (config.read_noise * config.full_scale) ** 2)
    draw = fast_normal if config.fast_noise else jax.random.normal
    intensity = intensity + jnp.sqrt(variance) * draw(noise_key, intensity.shape,
                                                      intensity.dtype)
  return quantise(intensity, config)


def quantise(intensity, config: OPUConfig, xp=jnp):
  """The b-bit camera's reading: saturation at ``full_scale``, ``2^bits - 1`` levels.

  Args:
    intensity: measured intensities (a JAX or numpy array).
    config: ``bits`` (None: no quantisation) and ``full_scale``.
    xp: the array module, ``jnp`` (the simulator) or ``numpy`` (a device's host side).

  Returns:
    The quantised intensities, in the input's units.

  Examples:
    >>> import numpy as np
    >>> quantise(np.array([0.0, 3.3, 99.0]), OPUConfig(bits=2, full_scale=9.0), xp=np)
    array([0., 3., 9.])
  """
  if config.bits is None:
    return intensity
  levels = 2 ** config.bits - 1
  code = xp.round(xp.clip(intensity / config.full_scale, 0.0, 1.0) * levels)
  return code * (config.full_scale / levels)


def linear_tile(x: jax.Array, medium: tuple[jax.Array, jax.Array],
                anchor: tuple[jax.Array, jax.Array], noise_key: jax.Array | None,
                config: OPUConfig) -> jax.Array:
  """Recovered linear projection of ``x`` (``(N, n)``) onto one tile of pixels.

  With the anchor field r_a per pixel and the input's field r_x = x R:
  |r_x + r_a|^2 - |r_x|^2 - |r_a|^2 = 2 Re(conj(r_a) r_x), so dividing by
  2 |r_a| gives Re(conj(r_a)/|r_a| * r_x) = x @ R_eff, a fixed real Gaussian
  matrix with entries N(0, 1/n) (R's columns rotated by the anchor's phase).
  |r_a|^2 is a calibration constant, measured once, noise-free.
  """
  re, im = x @ medium[0], x @ medium[1]
  a_re, a_im = anchor
  a_abs = jnp.sqrt(a_re ** 2 + a_im ** 2)
  if not config.intensity:
    return (a_re * re + a_im * im) / a_abs
  with_anchor = (re + a_re) ** 2 + (im + a_im) ** 2
  alone = re ** 2 + im ** 2
  if config.noise or config.bits is not None:
    keys = jax.random.split(noise_key, 2) if noise_key is not None else (None, None)
    with_anchor = camera(with_anchor, keys[0], config)
    alone = camera(alone, keys[1], config)
  return (with_anchor - alone - a_abs ** 2) / (2 * a_abs)


def effective_matrix_tile(medium: tuple[jax.Array, jax.Array],
                          anchor: tuple[jax.Array, jax.Array]) -> jax.Array:
  """R_eff = Re(conj(r_a)/|r_a| * R) for one tile: the matrix an ideal OPU applies."""
  a_re, a_im = anchor
  a_abs = jnp.sqrt(a_re ** 2 + a_im ** 2)
  return (a_re * medium[0] + a_im * medium[1]) / a_abs
