"""optax optimizers and schedules from the config."""

from __future__ import annotations

from typing import Callable

import flax
import optax


def make_schedule(config, total_steps: int) -> optax.Schedule:
  """``config.schedule``: "constant", "cosine" or "warmup_cosine"."""
  lr, kind = config.learning_rate, config.schedule
  if kind == "constant":
    return optax.constant_schedule(lr)
  if kind == "cosine":
    return optax.cosine_decay_schedule(lr, total_steps)
  if kind == "warmup_cosine":
    if not 0 <= config.warmup_steps < total_steps:
      raise ValueError(f"dfax.train: warmup_steps={config.warmup_steps} must be at least 0 and "
                       f"below the run's {total_steps} steps; lower --config.warmup_steps or "
                       "train longer.")
    return optax.warmup_cosine_decay_schedule(0.0, lr, config.warmup_steps, total_steps)
  raise ValueError(f"dfax.train: unknown schedule {kind!r}; use constant, cosine or "
                   "warmup_cosine.")


def _base(config, schedule) -> optax.GradientTransformation:
  name = config.optimizer
  if name == "adam":
    return optax.adamw(schedule, weight_decay=config.weight_decay)
  if name == "sgd":
    return optax.sgd(schedule, momentum=config.momentum or None, nesterov=config.nesterov)
  if name == "rmsprop":
    return optax.rmsprop(schedule, decay=0.9, momentum=config.momentum)
  raise ValueError(f"dfax.train: unknown optimizer {name!r}; use adam, sgd or rmsprop.")


def last_layer_labels(params) -> dict:
  """'train' for the parameters of the last top-level module, 'freeze' elsewhere."""
  top = list(params["params"].keys())
  last = sorted(top, key=_natural_key)[-1] if "head" not in top else "head"
  return _label_top_level(params, lambda name: name != last)


def frozen_labels(names: tuple[str, ...]):
  """Labels 'freeze' for the parameters of the named top-level modules, 'train' elsewhere.

  Raises:
    ValueError: naming the model's top-level modules, when a name is not one of them.
  """

  def labels(params) -> dict:
    top = list(params["params"].keys())
    unknown = [n for n in names if n not in top]
    if unknown:
      raise ValueError(f"dfax.train: config.freeze names {unknown}, which are not top-level "
                       f"modules of this model; choose among {top}.")
    return _label_top_level(params, lambda name: name in names)

  return labels


def _label_top_level(params, is_frozen: Callable[[str], bool]) -> dict:
  """'freeze' or 'train' for every parameter, by the name of its top-level module."""
  flat = flax.traverse_util.flatten_dict(params)
  return flax.traverse_util.unflatten_dict(
      {k: ("freeze" if is_frozen(k[1]) else "train") for k in flat})


def _zero_where_frozen(opt: optax.GradientTransformation, labels) -> optax.GradientTransformation:
  return optax.multi_transform({"train": opt, "freeze": optax.set_to_zero()}, labels)


def _natural_key(name: str):
  stem, _, num = name.rpartition("_")
  return (stem, int(num)) if num.isdigit() else (name, -1)


def train_last_layer_only(opt: optax.GradientTransformation) -> optax.GradientTransformation:
  """Wraps ``opt`` so all but the last top-level module get exactly zero update."""
  return _zero_where_frozen(opt, last_layer_labels)


def clip_then(opt: optax.GradientTransformation,
              max_norm: float) -> optax.GradientTransformation:
  """``opt`` applied to gradients clipped to global norm ``max_norm`` (0: not clipped).

  The same updates as ``optax.chain(optax.clip_by_global_norm(max_norm), opt)``,
  but the state is ``opt``'s own: clipping by global norm keeps no state, so
  the optimizer state has the same structure whether or not clipping is on, and
  a run can add or change ``grad_clip`` when it resumes
  (``--allow_changes=grad_clip``).
  """
  if not max_norm:
    return opt
  clip = optax.clip_by_global_norm(max_norm)

  def update(updates, state, params=None):
    updates, _ = clip.update(updates, clip.init(None), params)
    return opt.update(updates, state, params)

  return optax.GradientTransformation(opt.init, update)


def make_optimizer(config, total_steps: int, *,
                   chain_clip: bool = False) -> optax.GradientTransformation:
  """The optimizer: ``config.optimizer`` on ``config.schedule``, clipped by ``grad_clip``.

  ``config.freeze`` ("patch_embed,pos_embed") names top-level modules that get
  exactly zero update under any method. A training method may wrap the result
  (see ``methods.Method.wrap_optimizer``). ``chain_clip=True`` builds the layout
  of dfax before :func:`clip_then` (``optax.chain(clip, optimizer)``, the same
  updates, another state structure), to read checkpoints written with it.

  Examples:
    >>> import jax.numpy as jnp
    >>> from dfax.train.config_schema import default_config
    >>> opt = make_optimizer(default_config(), total_steps=150)
    >>> state = opt.init({"w": jnp.ones(3)})
    >>> updates, state = opt.update({"w": jnp.ones(3)}, state, {"w": jnp.ones(3)})
    >>> updates["w"].shape
    (3,)
  """
  opt = _base(config, make_schedule(config, total_steps))
  if chain_clip and config.grad_clip:
    opt = optax.chain(optax.clip_by_global_norm(config.grad_clip), opt)
  else:
    opt = clip_then(opt, config.grad_clip)
  frozen = tuple(n.strip() for n in config.freeze.split(",") if n.strip())
  if frozen:
    opt = _zero_where_frozen(opt, frozen_labels(frozen))
  return opt
