"""A LightOn OPU, driven through its own Python API ``lightonml``, as a projector.

The same pass as the simulator in ``dfax.opu.projector``, with the optics done
by a ``lightonml.OPU`` (a real device, or lightonml's ``SimulatedOpuDevice``):
the error is ternarised (in JAX, jitted) into two binary frames, the frames of
the whole batch go to the device in one call per step (``jax.pure_callback``),
the device's intensities are turned back into the linear projection with an
anchor (a patch of always-on input pixels) and the result is rescaled to the
digital projection's statistics (entries of variance 1/n, like
``dfax.projectors.shared``).

Keys and seeds: there are none. An OPU's transmission matrix is its scattering
medium, fixed by the hardware; no key chooses it. lightonml's simulated device
draws its matrix from numpy's ``RandomState(0)`` at the shape set by
``fit1d`` (``n_features`` rows, ``n_components`` columns), so it too is fixed.
A different simulated medium needs a ``SimulatedOpuDevice`` whose
``build_random_matrix(n_features, n_components, seed)`` was called at exactly
that shape before the ``OPU`` is built around it. Noise, on a real device, is
the camera's own and not reproducible: ``pure_callback``'s purity contract is
then only approximately met (jax may reuse or drop a call with equal inputs).

Install: ``bash scripts/install_lightonml.sh`` (lightonml 1.4.3 pins
``numexpr==2.7.*``, which does not install on current Python; the script
installs it without its pins, plus its runtime dependencies, the ``opu``
extra). Only lightonml's ``NoEncoding`` path is used: its
``SeparatedBitPlanEncoder`` uses ``np.float`` and fails on numpy >= 1.24.
"""

from __future__ import annotations

import math
from typing import Any

import jax.numpy as jnp
import numpy as np

from dfax.opu import device
from dfax.opu.config import OPUConfig
from dfax.projectors import layout as layout_lib
from dfax.projectors.callback import columns_on_host
from dfax.projectors.per_point import check_feature_ndim

CALIBRATION_FRAMES = 64


def is_simulated(opu: Any) -> bool:
  """Whether ``opu`` runs on lightonml's ``SimulatedOpuDevice`` (no hardware)."""
  return type(opu.device).__name__ == "SimulatedOpuDevice"


def default_anchor_pixels(n: int, amplitude: float) -> int:
  """Anchor pixels giving the simulator's anchor amplitude for an ``n``-pixel error.

  With medium entries Re, Im ~ N(0, 1/n_features) and intensities expressed in
  the simulator's units (``n_features / n`` times the device's), ``k`` anchor
  pixels give Re, Im ~ N(0, k / n) = N(0, amplitude^2 / 2).
  """
  return max(1, round(amplitude ** 2 * n / 2))


def camera_quantise(intensity: np.ndarray, config: OPUConfig) -> np.ndarray:
  """The b-bit camera with saturation of ``dfax.opu.device.camera``, in numpy (no noise)."""
  return device.quantise(intensity, config, xp=np)


class LightonDriver:
  """Host side: binary frames in, recovered linear projections out, on a ``lightonml.OPU``.

  Sizes the device on first use (``n_components`` and ``fit1d`` from the
  frames' width and the points' total width), calibrates once per size (the
  anchor's intensity, and the scale of the effective matrix from
  ``CALIBRATION_FRAMES`` fixed random frames), then sends every frame of a
  call in one ``transform`` (intensity mode: each frame with and without the
  anchor) or one ``linear_transform`` (linear mode).

  Args:
    opu: a ``lightonml.OPU``, real or ``simulated=True``.
    config: ``intensity``, ``bits`` and ``full_scale`` are used here.
    anchor_pixels: always-on pixels of the anchor; None: ``default_anchor_pixels``.
    emulate_camera: quantise intensities with ``config.bits`` on the host
      (lightonml's simulated device returns exact float intensities; a real
      device's camera quantises by itself). None: only when simulated.
  """

  def __init__(self, opu: Any, config: OPUConfig, anchor_pixels: int | None = None,
               emulate_camera: bool | None = None):
    self.opu, self.config = opu, config
    self.anchor_pixels = anchor_pixels
    self.emulate = is_simulated(opu) if emulate_camera is None else emulate_camera
    self._fitted: tuple[int, int] | None = None
    self._calibration: dict[tuple[int, int],
                            tuple[np.ndarray | None, float, np.ndarray | None]] = {}
    self.device_calls = 0

  def _anchor(self, n: int) -> int:
    if not self.config.intensity:
      return 0
    if self.anchor_pixels is not None:
      return self.anchor_pixels
    return default_anchor_pixels(n, self.config.anchor_amplitude)

  def _fit(self, n_features: int, n_components: int):
    if self._fitted == (n_features, n_components):
      return
    if is_simulated(self.opu):
      if self.opu.max_n_features != n_features:
        self.opu.max_n_features = n_features
    elif n_features > self.opu.max_n_features:
      raise ValueError(f"dfax.opu: {n_features} input pixels (error width + anchor) exceed this "
                       f"OPU's {self.opu.max_n_features}; use a narrower error or fewer anchor "
                       "pixels.")
    if self.opu.n_components != n_components:
      self.opu.n_components = n_components
    self.opu.fit1d(n_features=n_features)
    self._fitted = (n_features, n_components)

  def _intensities(self, x: np.ndarray, n: int) -> np.ndarray:
    """Device intensities of binary frames ``x`` (F, n + anchor), in simulator units."""
    self.device_calls += 1
    y = np.asarray(self.opu.transform(x), dtype=np.float64)
    if self.emulate:  # the simulated device's units: medium variance 1/(n + anchor)
      y = y * (x.shape[1] / n)
    return y

  def _raw_linear(self, frames: np.ndarray, anchor_intensity: np.ndarray | None,
                  camera: bool, pixels: np.ndarray | None = None) -> np.ndarray:
    """Unscaled linear projection of binary frames (F, n): anchor recovery or linear mode.

    ``pixels``: the camera pixels kept (``anchor_keep``); None keeps them all.
    """
    n = frames.shape[1]
    if not self.config.intensity:
      self.device_calls += 1
      return np.asarray(self.opu.linear_transform(frames), dtype=np.float64)
    k = self._anchor(n)
    on, off = np.ones((len(frames), k), np.uint8), np.zeros((len(frames), k), np.uint8)
    both = np.concatenate([np.concatenate([frames, on], 1), np.concatenate([frames, off], 1)])
    y = self._intensities(both, n)
    if pixels is not None:
      y = y[:, pixels]
    if camera and self.emulate:
      y = camera_quantise(y, self.config)
    with_anchor, alone = y[:len(frames)], y[len(frames):]
    a_abs = np.sqrt(anchor_intensity)
    return (with_anchor - alone - anchor_intensity) / (2 * a_abs)

  def _calibrate(self, n: int, n_components: int
                 ) -> tuple[np.ndarray | None, float, np.ndarray | None]:
    key = (n, n_components)
    if key not in self._calibration:
      read = self.config.pixels_read(n_components) if self.config.intensity else n_components
      self._fit(n + self._anchor(n), read)
      anchor_intensity, pixels = None, None
      if self.config.intensity:
        only_anchor = np.zeros((1, n + self._anchor(n)), np.uint8)
        only_anchor[:, n:] = 1
        anchor_intensity = self._intensities(only_anchor, n)[0]
        if read > n_components:  # the strongest anchors, in camera order
          pixels = np.sort(np.argsort(-anchor_intensity, kind="stable")[:n_components])
          anchor_intensity = anchor_intensity[pixels]
        if np.any(anchor_intensity <= 0):
          raise ValueError("dfax.opu: the anchor reads zero intensity on some camera pixels; "
                           "use more anchor_pixels.")
      probe = (np.random.RandomState(0).rand(CALIBRATION_FRAMES, n) < 0.5).astype(np.uint8)
      probe[:, 0] = 1  # no empty frame
      lin = self._raw_linear(probe, anchor_intensity, camera=False, pixels=pixels)
      variance = float(np.mean(lin ** 2) / np.mean(probe.sum(1)))
      self._calibration[key] = (anchor_intensity, 1.0 / math.sqrt(variance * n), pixels)
    return self._calibration[key]

  def project(self, frames: np.ndarray, n_components: int) -> np.ndarray:
    """Linear projections (F, n_components) of binary frames (F, n), entries' variance 1/n.

    Examples:
      Runs where lightonml is installed (``bash scripts/install_lightonml.sh``):

      >>> import pytest; lightonml = pytest.importorskip("lightonml")
      >>> device = lightonml.OPU(n_components=8, max_n_features=8, simulated=True)
      >>> driver = LightonDriver(device, OPUConfig(noise=False))
      >>> y = driver.project(np.eye(10, dtype=np.uint8), 64)   # rows of R_eff, variance 1/10
      >>> y.shape
      (10, 64)
    """
    frames = np.asarray(frames, dtype=np.uint8)
    anchor_intensity, scale, pixels = self._calibrate(frames.shape[1], n_components)
    return (self._raw_linear(frames, anchor_intensity, camera=True, pixels=pixels)
            * scale).astype(np.float32)


def make_lightonml_projector(opu: Any, config: OPUConfig | None = None, *,
                             anchor_pixels: int | None = None,
                             emulate_camera: bool | None = None, tie_copies: bool = False,
                             feature_ndim: int | None = None):
  """A projector that sends the error through a ``lightonml.OPU`` (real or simulated).

  Args:
    opu: ``lightonml.OPU(...)``; ``lightonml.OPU(simulated=True)`` runs without
      hardware (give it small sizes: its defaults build a 1000 x 200000
      complex matrix). Its size is set here (``n_components``, ``fit1d``).
    config: ``OPUConfig`` with ``noise=False`` (a device brings its own noise;
      lightonml's simulated device has none) and ``ternarize=True`` (the input
      device is binary); ``threshold``/``topk`` or ``input_bits`` (bit planes,
      all sent in the same ``transform``), ``intensity`` (anchor
      recovery from ``transform``; False: lightonml's ``linear_transform``),
      ``anchor_amplitude``, and in intensity mode ``anchor_keep`` (the device
      reads ``1/anchor_keep`` times more pixels and keeps those with the
      strongest anchor), ``bits`` and ``full_scale`` (the emulated camera)
      apply. Default ``OPUConfig(noise=False)``.
    anchor_pixels: always-on input pixels of the anchor; None matches the
      simulator's ``anchor_amplitude`` (see ``default_anchor_pixels``).
    emulate_camera: apply the ``bits``/``full_scale`` camera on the host;
      None: only for lightonml's simulated device (a real camera quantises).
    tie_copies, feature_ndim: the camera layout, as for the simulator
      (``dfax.projectors.layout``).

  Returns:
    ``projector(error, points) -> list of cotangents``, jittable: one
    ``jax.pure_callback`` per call carries the ``(2 N, n)`` binary frames.
    There is no key: the medium is the device's (module docstring).

  Examples:
    Runs where lightonml is installed (``bash scripts/install_lightonml.sh``):

    >>> import pytest; lightonml = pytest.importorskip("lightonml")
    >>> import flax.linen as nn, jax, dfax
    >>> model = nn.Sequential([nn.Dense(16), nn.tanh, nn.Dense(3)])
    >>> x = jnp.ones((4, 5))
    >>> params = model.init(jax.random.key(0), x)
    >>> loss_fn = lambda p: model.apply(p, x).sum()
    >>> opu = lightonml.OPU(n_components=8, max_n_features=8, simulated=True)  # resized here
    >>> proj = dfax.opu.make_lightonml_projector(opu, dfax.opu.OPUConfig(noise=False))
    >>> grads = jax.jit(dfax.dfa_grad(loss_fn, projector=proj))(params)
    >>> grads["params"]["layers_0"]["kernel"].shape
    (5, 16)
  """
  config = config or OPUConfig(noise=False)
  if config.noise:
    raise ValueError("dfax.opu: the lightonml backend takes OPUConfig(noise=False): a real "
                     "device brings its own noise and lightonml's simulated device has none.")
  if not config.ternarize:
    raise ValueError("dfax.opu: an OPU's input device is binary; use OPUConfig(ternarize=True) "
                     "with the lightonml backend.")
  check_feature_ndim(feature_ndim, "opu.make_lightonml_projector")
  if anchor_pixels is not None and anchor_pixels < 1:
    raise ValueError(f"dfax.opu: anchor_pixels must be >= 1, got {anchor_pixels}.")
  driver = LightonDriver(opu, config, anchor_pixels, emulate_camera)

  def projector(error, points):
    def through_device(rows, total):
      on_device = lambda frames: columns_on_host(driver.project, frames.astype(jnp.uint8), total)
      return device.through_binary_frames(rows, config, on_device).astype(error.dtype)

    return layout_lib.project_once(error, points, through_device, tie_copies=tie_copies,
                                   feature_ndim=feature_ndim)

  projector.driver = driver
  return projector
