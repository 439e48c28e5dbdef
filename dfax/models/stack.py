"""A stack of identical residual MLP blocks, split into pipeline stages.

The same parameters serve two programs: the linen model ``StackedMLP`` (run
on one device, e.g. under ``dfax.dfa_grad``) and the three pure functions of
``dfax.parallel.pipeline.PipelineParts`` (embedding, one stage, head) that the pipeline
runs across a ``stage`` mesh axis. Stage parameters are stacked along a
leading ``(num_stages, blocks_per_stage)`` pair of axes, so sharding the first
one over ``stage`` gives every device its own blocks.

A ``FeedbackPoint`` named ``out`` sits at every stage's output (``cut="stage"``)
or at every block's output (``cut="block"``); their paths are those
``dfa_grad`` gives the points, so a pipeline projecting with the same key
uses the same matrices as the one-device DFA step.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from dfax.core.selection import FeedbackPoint
from dfax.parallel.pipeline import STAGE_POINT, PipelineParts

CUTS = ("stage", "block")
BLOCK_POINT = "stages/blocks/out/in"    # dfa_grad's path of a block-output point (STAGE_POINT:
                                        # of a stage-output point, the pipeline's default)


@dataclasses.dataclass(frozen=True)
class StackConfig:
  """Sizes of ``StackedMLP``: ``num_stages * blocks_per_stage`` blocks of width ``d``."""
  d_in: int = 16
  d: int = 32
  d_ff: int = 64
  n_out: int = 8
  num_stages: int = 4
  blocks_per_stage: int = 2
  cut: str = "stage"

  def __post_init__(self):
    if self.cut not in CUTS:
      raise ValueError(f"StackConfig.cut must be one of {CUTS}, got {self.cut!r}.")


class Block(nn.Module):
  """``x + fc2(tanh(fc1(x)))``, with a feedback marker at the output if cut per block."""
  config: StackConfig

  @nn.compact
  def __call__(self, x, _=None):
    c = self.config
    h = nn.Dense(c.d, name="fc2")(jnp.tanh(nn.Dense(c.d_ff, name="fc1")(x)))
    y = x + h
    if c.cut == "block":
      y = FeedbackPoint(name="out")(y)
    return y, None


class Stage(nn.Module):
  """``blocks_per_stage`` scanned blocks, then (cut per stage) a feedback marker."""
  config: StackConfig

  @nn.compact
  def __call__(self, x, _=None):
    c = self.config
    blocks = nn.scan(Block, variable_axes={"params": 0}, split_rngs={"params": True},
                     length=c.blocks_per_stage)(c, name="blocks")
    x, _ = blocks(x, None)
    if c.cut == "stage":
      x = FeedbackPoint(name="out")(x)
    return x, None


class StackedMLP(nn.Module):
  """Embedding Dense, ``num_stages`` scanned stages, head Dense.

  Examples:
    >>> model = StackedMLP(StackConfig(num_stages=2, blocks_per_stage=1))
    >>> params = model.init(jax.random.key(0), jnp.ones((4, 16)))
    >>> params["params"]["stages"]["blocks"]["fc1"]["kernel"].shape
    (2, 1, 32, 64)
  """
  config: StackConfig

  @nn.compact
  def __call__(self, x):
    c = self.config
    h = nn.Dense(c.d, name="embed")(flatten(x))
    stages = nn.scan(Stage, variable_axes={"params": 0}, split_rngs={"params": True},
                     length=c.num_stages)(c, name="stages")
    h, _ = stages(h, None)
    return nn.Dense(c.n_out, name="head")(h)


def flatten(x: jax.Array) -> jax.Array:
  """``(N, ...) -> (N, features)``: images enter the embedding Dense as vectors."""
  return x.reshape(x.shape[0], -1)


def sum_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Summed (not averaged) softmax cross-entropy; the pipeline divides by the batch."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).sum()


def pipeline_parts(config: StackConfig) -> PipelineParts:
  """The pure functions of ``StackedMLP(config)`` for ``dfax.parallel.pipeline``."""
  dense = lambda p, x: x @ p["kernel"] + p["bias"]

  def block(p, x):
    return x + dense(p["fc2"], jnp.tanh(dense(p["fc1"], x)))

  def stage(p, x):
    x, _ = jax.lax.scan(lambda h, pb: (block(pb, h), None), x, p["blocks"])
    return x

  return PipelineParts(embed=lambda p, x: dense(p, flatten(x)), stage=stage, head=dense, loss=sum_cross_entropy,
                       block=block if config.cut == "block" else None,
                       point=STAGE_POINT if config.cut == "stage" else BLOCK_POINT)


def to_pipeline(params: Any) -> dict:
  """Linen params of ``StackedMLP`` -> ``{"embed", "stages", "head"}`` (same arrays)."""
  p = params["params"]
  return {"embed": p["embed"], "stages": p["stages"], "head": p["head"]}


def from_pipeline(tree: dict) -> dict:
  """Inverse of ``to_pipeline``: a tree shaped like ``StackedMLP``'s params."""
  return {"params": {"embed": tree["embed"], "stages": tree["stages"], "head": tree["head"]}}
