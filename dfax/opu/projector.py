"""The simulated OPU as a dfax projector: one device pass covers every point.

An OPU projects its whole input frame onto all camera pixels at once, so the
projector lays the feedback points side by side on the camera (the layout of
``dfax.projectors.shared``) and simulates the pass tile by tile of camera
columns: the complex transmission matrix is regenerated from keys per tile
and never materialised whole. Within a tile, a large batch is simulated in
blocks of rows (``ROW_BLOCK`` frame pixels at a time), which keeps the camera's
intermediates in cache (1.5x faster at 1024 x 256 -> 4x256 on CPU); the medium
does not depend on the blocking.

Fresh noise per training step while staying reproducible: build the projector
inside the jitted step with ``noise_key=jax.random.fold_in(base_key, step)``
(``dfax.train`` does this).

Pooled points (an encoder's, ``PointSpec.pooled``) are sent as one more frame
per example, the token-averaged error, in the same device pass.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dfax.opu import device
from dfax.opu.config import OPUConfig
from dfax.projectors import layout as layout_lib
from dfax.projectors.dense import concat_tiles
from dfax.projectors.per_point import check_feature_ndim


def _tile_keys(key: jax.Array, j):
  with jax.ensure_compile_time_eval():  # constants when key and j are concrete
    medium_key, anchor_key = jax.random.split(jax.random.fold_in(key, j))
  return medium_key, anchor_key


def _run_tiles(error: jax.Array, points, tile_fn, tile: int, **layout_options):
  def in_tiles(rows, total):  # pooled points: their per-example frames are rows too
    cols = min(tile, total)
    return concat_tiles(lambda j: tile_fn(rows, j, cols), total, cols)

  return layout_lib.project_once(error, points, in_tiles, **layout_options)


ROW_BLOCK = 1 << 19


def _row_blocks(error2d: jax.Array, cols: int, fn, noise_key: jax.Array | None,
                frames_per_row: int = 2):
  """``fn(rows, noise_key)`` over blocks of error rows, for one tile of ``cols`` camera columns.

  A block holds at most ``ROW_BLOCK`` frame pixels (frames x rows x cols),
  so the camera's intermediates stay in cache: a large batch is cut into
  blocks (zero rows pad the last; they project to zero and are dropped),
  each with the noise key folded with its index. The medium of the tile is
  shared by all blocks, so the projection does not depend on the blocking;
  only the noise realisation does.
  """
  n_rows = error2d.shape[0]
  block = max(1, ROW_BLOCK // (frames_per_row * cols))
  if n_rows <= block:
    return fn(error2d, noise_key)
  count = -(-n_rows // block)
  padded = jnp.pad(error2d, ((0, count * block - n_rows), (0, 0)))

  def one(args):
    rows, b = args
    return fn(rows, None if noise_key is None else jax.random.fold_in(noise_key, b))

  out = jax.lax.map(one, (padded.reshape(count, block, -1), jnp.arange(count)))
  return out.reshape(count * block, -1)[:n_rows]


def make_projector(config: OPUConfig | None = None, *, key: jax.Array,
                   noise_key: jax.Array | None = None, tie_copies: bool = False,
                   feature_ndim: int | None = None):
  """A projector that sends the error through the simulated OPU.

  Args:
    config: device settings; default ``OPUConfig()`` (ternarised, 8-bit,
      noisy); ``OPUConfig.ideal()`` equals ``digital_reference(key)``.
    key: the device's transmission matrix and anchor (fixed for training).
    noise_key: camera noise; needed when ``config.noise``.
    tie_copies, feature_ndim: the camera layout (``dfax.projectors.layout``):
      the layers of a scanned point share one slice of pixels; only the last
      ``feature_ndim`` dims of a point get pixels of their own.

  Returns:
    ``projector(error, points) -> list of cotangents``.

  Examples:
    >>> import flax.linen as nn, dfax
    >>> model = nn.Sequential([nn.Dense(16), nn.tanh, nn.Dense(3)])
    >>> x = jnp.ones((4, 5))
    >>> params = model.init(jax.random.key(0), x)
    >>> loss_fn = lambda p: model.apply(p, x).sum()
    >>> k, nk = jax.random.key(1), jax.random.key(2)   # medium; camera noise
    >>> proj = dfax.opu.make_projector(dfax.opu.OPUConfig(bits=8), key=k, noise_key=nk)
    >>> grads = dfax.dfa_grad(loss_fn, projector=proj)(params)
    >>> grads["params"]["layers_0"]["kernel"].shape
    (5, 16)
  """
  config = config or OPUConfig()
  check_feature_ndim(feature_ndim, "opu.make_projector")
  if config.noise and noise_key is None:
    raise ValueError("dfax.opu: config.noise=True needs a noise_key (e.g. "
                     "jax.random.fold_in(key, step) for fresh noise each step).")

  def rows_fn(rows, medium, anchor, noise):
    linear = lambda frames: device.linear_tile(frames, medium, anchor, noise, config)
    if not config.ternarize:
      return device.through_analog_frames(rows, linear)
    return device.through_binary_frames(rows, config, linear)

  def tile_fn(error2d, j, cols):
    n = error2d.shape[-1]
    medium_key, anchor_key = _tile_keys(key, j)
    medium = device.medium_tile(medium_key, n, cols, error2d.dtype)
    anchor = device.anchor_field(anchor_key, cols, config, error2d.dtype)
    tile_noise = jax.random.fold_in(noise_key, j) if noise_key is not None else None
    return _row_blocks(error2d, cols, lambda rows, noise: rows_fn(rows, medium, anchor, noise),
                       tile_noise, config.frames_per_row)

  def projector(error, points):
    return _run_tiles(error, points, tile_fn, config.tile, tie_copies=tie_copies,
                      feature_ndim=feature_ndim)

  return projector


def digital_reference(key: jax.Array, tile: int = 4096, *, tie_copies: bool = False,
                      feature_ndim: int | None = None):
  """The digital projection the ideal OPU computes: ``error @ R_eff``, explicitly.

  Same layout (and layout options) and tiles as ``make_projector``;
  R_eff = Re(conj(r_a)/|r_a| R) is formed as a real matrix and applied with
  one matmul per tile.
  """
  config = OPUConfig.ideal()

  def tile_fn(error2d, j, cols):
    medium_key, anchor_key = _tile_keys(key, j)
    medium = device.medium_tile(medium_key, error2d.shape[-1], cols, error2d.dtype)
    anchor = device.anchor_field(anchor_key, cols, config, error2d.dtype)
    return error2d @ device.effective_matrix_tile(medium, anchor)

  def projector(error, points):
    return _run_tiles(error, points, tile_fn, tile, tie_copies=tie_copies,
                      feature_ndim=feature_ndim)

  return projector
