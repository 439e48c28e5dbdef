"""What the projection costs optically versus digitally, per training step.

Assumptions (stated, adjustable through ``DeviceSpec``): a LightOn-class
OPU whose DMD takes binary frames of up to 1M pixels and whose camera reads up
to 2M pixels, at ``frame_rate_hz`` frames per second whatever the sizes
(the optical matrix product is "free"; the device is frame-rate bound), drawing
``power_w`` watts. Wang et al. 2024 (arXiv:2409.12965) quote up to 1500 TeraOPS
under 30 W; with the defaults below a full-size frame, 1M x 2M multiply-adds
(complex: 4 real MACs) at 1.5 kHz, is 1e6 * 2e6 * 4 * 2 * 1500 ≈ 2.4e16 OPS,
the same order. Linear recovery with an anchor costs 2 camera frames per input
frame, ternarisation 2 input frames per error vector. The GPU side is modelled
as a dense matmul with a fixed (bf16) feedback matrix: the larger of the
compute time at ``gpu_flops`` (H100 bf16 dense ≈ 1e15) and the time to stream
the matrix from memory at ``gpu_bandwidth`` (3.35 TB/s), or, when the matrix
does not fit in ``gpu_memory``, to regenerate it at ``gpu_rng_per_s`` numbers
per second; plus a fixed per-call latency.
"""

from __future__ import annotations

import dataclasses
import math

from dfax.opu.config import OPUConfig


@dataclasses.dataclass(frozen=True)
class DeviceSpec:
  frame_rate_hz: float = 1500.0
  max_input_pixels: int = 1_000_000
  max_output_pixels: int = 2_000_000
  power_w: float = 30.0
  gpu_flops: float = 1.0e15
  gpu_bandwidth: float = 3.35e12
  gpu_memory: float = 80e9
  gpu_rng_per_s: float = 1.0e12
  gpu_power_w: float = 700.0
  gpu_latency_s: float = 10e-6


@dataclasses.dataclass(frozen=True)
class StepCost:
  frames: int
  optical_time_s: float
  optical_energy_j: float
  optical_teraops: float
  digital_flops: float
  gpu_time_s: float
  gpu_energy_j: float

  def as_dict(self) -> dict:
    return dataclasses.asdict(self)


def estimate_cost(batch: int, n_out: int, width: int, config: OPUConfig | None = None,
                  spec: DeviceSpec = DeviceSpec()) -> StepCost:
  """Cost of projecting ``batch`` error vectors of size ``n_out`` to ``width`` outputs.

  Args:
    batch: error vectors per step (examples, or examples x tokens).
    n_out: error size (DMD pixels used).
    width: total feedback width (sum over points); the camera reads
      ``width / config.anchor_keep`` pixels.
    config: the OPU settings (ternarisation, intensity and ``anchor_keep``
      decide frames).
    spec: device and GPU assumptions.

  Returns:
    A ``StepCost``; ``optical_teraops`` is the equivalent digital work divided
    by the optical time, in TeraOPS.

  Examples:
    >>> cost = estimate_cost(batch=512, n_out=10, width=4 * 1024)
    >>> cost.frames            # 512 vectors x 2 ternary frames x 2 (anchor recovery)
    2048
    >>> cost.optical_time_s > 0
    True
  """
  config = config or OPUConfig()
  passes_in = math.ceil(n_out / spec.max_input_pixels)
  passes_out = math.ceil(config.pixels_read(width) / spec.max_output_pixels)
  frames_per_vector = config.frames_per_row * (2 if config.intensity else 1)
  frames = batch * frames_per_vector * passes_in * passes_out
  optical_time = frames / spec.frame_rate_hz
  digital_flops = 2.0 * batch * n_out * width
  gpu_time = gpu_projection_time(batch, n_out, width, spec)
  return StepCost(frames=frames, optical_time_s=optical_time,
                  optical_energy_j=optical_time * spec.power_w,
                  optical_teraops=digital_flops / optical_time / 1e12,
                  digital_flops=digital_flops, gpu_time_s=gpu_time,
                  gpu_energy_j=gpu_time * spec.gpu_power_w)


def gpu_projection_time(batch: int, n_out: int, width: int,
                        spec: DeviceSpec = DeviceSpec()) -> float:
  """Seconds for ``(batch, n_out) @ (n_out, width)`` with a fixed bf16 matrix on a GPU."""
  entries = float(n_out) * width
  compute = 2.0 * batch * entries / spec.gpu_flops
  if 2.0 * entries <= spec.gpu_memory:
    matrix = 2.0 * entries / spec.gpu_bandwidth
  else:
    matrix = entries / spec.gpu_rng_per_s
  return max(compute, matrix) + spec.gpu_latency_s


def crossover_width(batch: int, config: OPUConfig | None = None,
                    spec: DeviceSpec = DeviceSpec()) -> int | None:
  """Smallest square size (n_out = width) from which the optical pass is faster.

  Searches powers of two up to the device limits; None if never within them.
  """
  size = 2
  while size <= spec.max_input_pixels:
    c = estimate_cost(batch, size, size, config, spec)
    if c.optical_time_s < c.gpu_time_s:
      return size
    size *= 2
  return None
