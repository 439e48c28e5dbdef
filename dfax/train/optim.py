"""optax optimizers and schedules from the config."""

from __future__ import annotations

import flax
import jax
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
  flat = flax.traverse_util.flatten_dict(params)
  return flax.traverse_util.unflatten_dict(
      {k: ("train" if k[1] == last else "freeze") for k in flat})


def _natural_key(name: str):
  stem, _, num = name.rpartition("_")
  return (stem, int(num)) if num.isdigit() else (name, -1)


def make_optimizer(config, total_steps: int, method: str) -> optax.GradientTransformation:
  """The optimizer; for ``shallow``, all but the last layer get exactly zero update."""
  opt = _base(config, make_schedule(config, total_steps))
  if config.grad_clip:
    opt = optax.chain(optax.clip_by_global_norm(config.grad_clip), opt)
  if method == "shallow":
    opt = optax.multi_transform({"train": opt, "freeze": optax.set_to_zero()},
                                last_layer_labels)
  return opt


def schedule_value(config, total_steps: int, step) -> jax.Array:
  return make_schedule(config, total_steps)(step)
