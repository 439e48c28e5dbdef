"""Settings of the simulated optical processing unit (OPU), each switchable."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any


@dataclasses.dataclass(frozen=True)
class OPUConfig:
  """What the simulated device does to a projection.

  Units: the transmission matrix has entries with Re, Im ~ N(0, 1/n) for an
  n-pixel input, so a binary input with k pixels on gives a field of mean
  intensity 2k/n; intensities below are in those units.

  Attributes:
    ternarize: send the error as two binary frames e+ = [e > t], e- = [e < -t]
      (a DMD is binary); False feeds the real-valued error, each row scaled to
      the input's full range (an idealised analog input).
    threshold: t as a multiple of the per-example std of the error.
    topk: if set, t is chosen per example so this fraction of entries is on
      (overrides ``threshold``).
    input_bits: if set, each row is sent as sign-separated bit planes instead
      of one ternary frame pair: its positive and its negative part, each
      scaled to its own peak (two magnitudes per row, sent digitally) and
      quantised to ``input_bits`` bits, one binary frame per bit and sign
      (``2 * input_bits`` frames; lightonml's ``SeparatedBitPlanEncoder``
      does this with one scale per batch). The projection is recombined with
      weights ``2^-k``. Replaces ``threshold``/``topk``; needs ``ternarize``.
    intensity: measure |field|^2 and recover the linear part with the anchor
      (holographic reference); False reads the linear projection directly.
    anchor_amplitude: amplitude of the reference field per camera pixel.
    anchor_keep: the fraction of camera pixels used, those with the strongest
      reference (1: every pixel). The anchor's intensity varies from pixel to
      pixel (exponentially distributed); where it is weak, dividing by it in
      the recovery amplifies the camera's noise, so a few columns carry mostly
      noise. With ``anchor_keep=q`` the camera reads ``1/q`` times more pixels
      and calibration keeps the strongest, whose anchor intensity is at least
      ``-ln(q)`` times its mean. The effective matrix keeps its law.
    bits: camera bit depth (None: no quantisation).
    full_scale: intensity that saturates the camera (exposure); above clips.
    noise: add shot and read noise (drawn from the projector's noise key).
    photons_per_unit: photo-electrons per unit intensity (shot noise: Poisson,
      approximated as Gaussian with variance intensity / photons_per_unit).
    read_noise: read noise std as a fraction of ``full_scale``.
    fast_noise: draw the noise with ``dfax.opu.noise.fast_normal`` (a keyed
      counter hash, variance exact, tails cut at 3.46 std; ~15x cheaper on
      CPU); False uses ``jax.random.normal``.
    tile: camera columns simulated at once (bounds memory: the complex
      transmission matrix is never materialised whole).

  Examples:
    >>> cfg = OPUConfig(bits=6, noise=True)
    >>> cfg.bits, cfg.ternarize
    (6, True)
    >>> OPUConfig.ideal().noise      # no non-ideality: the digital projection
    False
  """

  ternarize: bool = True
  threshold: float = 1.0
  topk: float | None = None
  input_bits: int | None = None
  intensity: bool = True
  anchor_amplitude: float = 1.0
  anchor_keep: float = 1.0
  bits: int | None = 8
  full_scale: float = 8.0
  noise: bool = True
  photons_per_unit: float = 2000.0
  read_noise: float = 1.0 / 1024
  fast_noise: bool = True
  tile: int = 4096

  @classmethod
  def ideal(cls) -> OPUConfig:
    """No non-ideality: reduces exactly to the digital linear projection."""
    return cls(ternarize=False, intensity=True, bits=None, noise=False)

  @classmethod
  def from_dict(cls, values: Mapping[str, Any] | None) -> OPUConfig:
    """From a (possibly empty) mapping such as ``config.dfa.opu``; unknown keys raise."""
    values = dict(values or {})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
      raise ValueError(f"dfax.opu: unknown OPU settings {unknown}; known: {sorted(known)}.")
    return cls(**values)

  def pixels_read(self, width: int) -> int:
    """Camera pixels the device reads for ``width`` feedback columns (``anchor_keep``)."""
    return math.ceil(width / self.anchor_keep)

  @property
  def frames_per_row(self) -> int:
    """Binary (or analog) input frames one error row takes."""
    if not self.ternarize:
      return 1
    return 2 * (self.input_bits or 1)

  def __post_init__(self):
    if self.bits is not None and not 1 <= self.bits <= 16:
      raise ValueError(f"dfax.opu: bits must be in 1..16 or None, got {self.bits}.")
    if self.topk is not None and not 0.0 < self.topk <= 1.0:
      raise ValueError(f"dfax.opu: topk must be a fraction in (0, 1], got {self.topk}.")
    if self.input_bits is not None:
      if not 1 <= self.input_bits <= 16:
        raise ValueError(f"dfax.opu: input_bits must be in 1..16 or None, got "
                         f"{self.input_bits}.")
      if not self.ternarize or self.topk is not None:
        raise ValueError("dfax.opu: input_bits sends binary bit planes in place of the "
                         "ternary frames; use it with ternarize=True and without topk.")
    if not 0.0 < self.anchor_keep <= 1.0:
      raise ValueError(f"dfax.opu: anchor_keep must be a fraction in (0, 1], got "
                       f"{self.anchor_keep}.")
    if self.full_scale <= 0 or self.threshold < 0:
      raise ValueError("dfax.opu: full_scale must be > 0 and threshold >= 0.")
