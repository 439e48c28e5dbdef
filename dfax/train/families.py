"""The model families the trainer builds: one :class:`ModelFamily` record each.

A record holds everything the trainer, validation, ``--help`` and the docs
know about a family (``config.model.name``): its builder, its ``config.model``
fields with defaults taken from the model's own dataclass, how it is applied,
the feedback presets that fit it, how a pipeline splits it, and a config
written for it. Adding a family is adding one record to :data:`FAMILIES`.

Examples:
  >>> from dfax.train import families
  >>> lm = families.get("transformer_lm")
  >>> section = lm.section(num_layers=8)      # config.model: defaults + changes
  >>> section.num_layers, section.d_model      # d_model: TransformerConfig's default
  (8, 128)
  >>> "after_ln" in lm.presets
  True
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax

from dfax import models
from dfax.models import presets
from dfax.models.cnn import POOLS
from dfax.models.transformer import ERROR_AT, NORMS, RESIDUAL_INITS
from dfax.train.field import Field, with_choices, dataclass_default, section

Forward = Callable[[Any, Any, Any], jax.Array]  # (model, params, x) -> logits


def _apply(model, params, x) -> jax.Array:
  return model.apply(params, x)


@dataclasses.dataclass(frozen=True)
class ModelFamily:
  """A model family the trainer can build (``config.model.name``).

  Attributes:
    name: the value of ``config.model.name``.
    build: ``(config, num_classes) -> flax.linen.Module``.
    fields: the ``config.model`` fields besides ``name``, with defaults.
    example_config: a file in ``configs/`` written for this family.
    help: one line for ``--help`` and the docs.
    presets: the ``config.dfa.feedback`` presets (``dfax.models.presets``)
      that fit this family; ``''`` (dfa_grad's default) always does.
    forward: ``(model, params, x) -> logits``, how the train, eval and
      alignment steps apply the model; ``model.apply`` by default.
    pipeline_parts: ``model -> dfax.parallel.pipeline.PipelineParts`` for a
      family a pipeline (``mesh.stage > 1``) can split; ``None`` otherwise.
    hybrid: whether its builder takes ``config.dfa.bp_blocks`` (the last K
      of ``config.model.num_layers`` blocks train by exact backprop).
  """

  name: str
  build: Callable[[Any, int], Any]
  fields: tuple[Field, ...]
  example_config: str
  help: str
  presets: tuple[str, ...] = ()
  forward: Forward = _apply
  pipeline_parts: Callable[[Any], Any] | None = None
  hybrid: bool = False

  def section(self, **changes: Any):
    """A ``config.model`` section: this family's defaults with ``changes`` applied.

    Raises:
      KeyError: for a field the family does not have.
    """
    return section(self.name, self.fields, changes, "model family")


def _fields(cls: type, helps: dict[str, str], choices: dict[str, tuple] | None = None,
            **defaults: Any) -> tuple[Field, ...]:
  """Fields named by ``helps``; defaults from ``cls`` unless given in ``defaults``.

  A field in ``choices`` takes only those values; its help starts with them.
  """
  choices = choices or {}

  def text(name: str) -> str:
    return with_choices(choices[name], helps[name]) if name in choices else helps[name]
  return tuple(Field(name, defaults[name] if name in defaults else dataclass_default(cls, name),
                     text(name), choices=tuple(choices.get(name, ()))) for name in helps)


def _mlp(config, num_classes: int) -> Any:
  return models.MLP(features=tuple(config.model.features), num_classes=num_classes,
                    activation=config.model.activation)


def _cnn(config, num_classes: int) -> Any:
  m = config.model
  if isinstance(m.kernel_size, bool) or not isinstance(m.kernel_size, int) or m.kernel_size < 1:
    raise ValueError(f"dfax.train: config.model.kernel_size={m.kernel_size!r} must be an integer "
                     ">= 1 (the side of the square conv window), e.g. --config.model.kernel_size=3.")
  return models.CNN(num_classes=num_classes, features=tuple(m.features), dense=tuple(m.dense),
                    activation=m.activation, kernel_size=(m.kernel_size, m.kernel_size),
                    pool=m.pool)


def _transformer_lm(config, num_classes: int) -> Any:
  m = config.model
  return models.TransformerLM(models.TransformerConfig(
      vocab_size=num_classes, d_model=m.d_model, num_heads=m.num_heads,
      num_layers=m.num_layers, d_ff=m.d_ff, max_len=config.dataset.seq_len, remat=m.remat,
      error_at=m.error_at, norm=m.norm, bp_blocks=config.dfa.bp_blocks,
      scan_unroll=m.scan_unroll, residual_init=m.residual_init))


def _vit(config, num_classes: int) -> Any:
  m = config.model
  return models.ViT(models.ViTConfig(num_classes=num_classes, patch=m.patch,
                                     d_model=m.d_model, num_heads=m.num_heads,
                                     num_layers=m.num_layers, d_ff=m.d_ff, remat=m.remat,
                                     norm=m.norm, pre_logits=m.pre_logits,
                                     bp_blocks=config.dfa.bp_blocks,
                                     scan_unroll=m.scan_unroll))


def _stacked_mlp(config, num_classes: int) -> Any:
  from dfax.models import stack  # noqa: PLC0415

  m = config.model
  return stack.StackedMLP(stack.StackConfig(
      d=m.d, d_ff=m.d_ff, n_out=num_classes, num_stages=m.num_stages,
      blocks_per_stage=m.blocks_per_stage, cut=m.cut))


def _stack_parts(model) -> Any:
  from dfax.models.stack import pipeline_parts  # noqa: PLC0415
  return pipeline_parts(model.config)


def _stack_cuts() -> tuple[str, ...]:
  from dfax.models.stack import CUTS  # noqa: PLC0415
  return CUTS


def _stack_config() -> type:
  from dfax.models.stack import StackConfig  # noqa: PLC0415
  return StackConfig


_ACTIVATION = "hidden activation"
_BLOCK_CHOICES = {"norm": NORMS}
_BLOCKS = {
    "d_model": "width of the residual stream",
    "num_heads": "attention heads (must divide d_model)",
    "num_layers": "Transformer blocks (one nn.scan)",
    "d_ff": "hidden width of each block's MLP",
    "remat": "rematerialise each block in the backward pass (nn.remat)",
    "scan_unroll": "blocks per iteration of the nn.scan loop; num_layers unrolls it, so that "
                   "XLA drops the input cotangents DFA discards under macro_out (longer compile)",
}
_NORM = "LayerNorm in front of each sublayer or after each residual add"

FAMILIES: dict[str, ModelFamily] = {f.name: f for f in (
    ModelFamily(
        "mlp", _mlp, _fields(models.MLP, {
            "features": "widths of the hidden layers",
            "activation": _ACTIVATION}, {"activation": tuple(models.ACTIVATIONS)},
            features=(800, 800)),
        "mnist_mlp.py", "multilayer perceptron (Nøkland 2016's MNIST setups)"),
    ModelFamily(
        "cnn", _cnn, _fields(models.CNN, {
            "features": "channels of the conv layers (each followed by a pool)",
            "dense": "widths of the hidden Dense layers after the convs",
            "activation": _ACTIVATION,
            "kernel_size": "side of the square conv window",
            "pool": "the pooling after each conv"},
            {"activation": tuple(models.ACTIVATIONS), "pool": tuple(POOLS)},
            kernel_size=dataclass_default(models.CNN, "kernel_size")[0]),
        "mnist_cnn.py", "conv net: conv + pool layers, then Dense layers"),
    ModelFamily(
        "transformer_lm", _transformer_lm, _fields(models.TransformerConfig, {
            **_BLOCKS,
            "error_at": "DFA's error before or after the vocabulary projection",
            "norm": _NORM,
            "residual_init": "depth scales the kernels that write into the residual stream by "
                             "1/sqrt(2 num_layers) (GPT-2): deep post-LN stacks then train by "
                             "backprop at higher learning rates"},
            {**_BLOCK_CHOICES, "error_at": ERROR_AT,
             "residual_init": RESIDUAL_INITS}),
        "shakespeare_lm.py", "decoder-only Transformer LM (scanned blocks)",
        presets=tuple(presets.PRESETS), forward=models.lm_forward, hybrid=True),
    ModelFamily(
        "vit", _vit, _fields(models.ViTConfig, {
            "patch": "side of the square patches; must divide the image sides",
            **_BLOCKS,
            "norm": _NORM,
            "pre_logits": "width of a tanh Dense between the final LayerNorm and the head; 0: none"},
            _BLOCK_CHOICES),
        "vit_mnist.py", "Vision Transformer (scanned blocks, mean pooling)",
        presets=tuple(presets.PRESETS), hybrid=True),
    ModelFamily(
        "stacked_mlp", _stacked_mlp, _fields(_stack_config(), {
            "d": "width of the residual stream",
            "d_ff": "hidden width of each residual block",
            "num_stages": "pipeline stages (a scan of stages)",
            "blocks_per_stage": "residual blocks per stage (a scan of blocks)",
            "cut": "a feedback marker after every stage or every block"},
            {"cut": _stack_cuts()}),
        "mnist_pipeline.py", "residual MLP in stages that a pipeline can split",
        presets=("markers",), pipeline_parts=_stack_parts),
)}


def get(name: str) -> ModelFamily:
  """The record named ``name``; ``KeyError`` naming the known ones otherwise."""
  try:
    return FAMILIES[name]
  except KeyError:
    raise KeyError(f"unknown model family {name!r}; known: {sorted(FAMILIES)}") from None
