"""Config checks run before a run writes anything; each error names the key and a fix.

Two stages: :func:`check_config` needs only the config (names, signs, ranges,
the model's fields), :func:`check_task` also the loaded data (limits within
the dataset, a shift smaller than the image, a batch that fits the examples).
``check_config`` also sets ``mesh.data=0`` (every device) to the number of data
shards in use (:mod:`dfax.train.devices`).

Examples:
  >>> from dfax.train.config_schema import default_config
  >>> config = default_config()
  >>> config.batch_size = 0
  >>> check_config(config)
  Traceback (most recent call last):
  ...
  dfax.train.errors.ConfigError: dfax.train: config.batch_size=0 must be an integer >= 1; ...
"""

from __future__ import annotations

import math
from typing import Any

import jax

from dfax.models import presets
from dfax.train import config_schema, datasets, devices, families, methods, pipelined
from dfax.train.errors import ConfigError

SCHEDULES = ("constant", "cosine", "warmup_cosine")
OPTIMIZERS = ("adam", "sgd", "rmsprop")
MAX_SEED = 2**31 - 1


def _fail(key: str, value: Any, want: str, example: Any) -> None:
  raise ConfigError(f"dfax.train: config.{key}={value!r} {want}; set e.g. "
                    f"--config.{key}={example}.")


def _get(config, key: str) -> Any:
  node = config
  for part in key.split("."):
    node = node[part]
  return node


def _has(config, key: str) -> bool:
  parent, _, leaf = key.rpartition(".")
  return leaf in (_get(config, parent) if parent else config)


def _is_int(v) -> bool:
  return isinstance(v, int) and not isinstance(v, bool)


def _largest_divisor(limit: int, *numbers: int) -> int:
  """The largest integer up to ``limit`` that divides every one of ``numbers``: a valid example."""
  return max(d for d in range(1, limit + 1) if all(n % d == 0 for n in numbers))


def _int_at_least(config, key: str, low: int, example: Any) -> None:
  v = _get(config, key)
  if not _is_int(v) or v < low:
    _fail(key, v, f"must be an integer >= {low}", example)


def _positive_float(config, key: str, example: Any, allow_zero: bool = False) -> None:
  v = _get(config, key)
  ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
  if not ok or v < 0 or (v == 0 and not allow_zero):
    _fail(key, v, "must be a finite number " + (">= 0" if allow_zero else "> 0"), example)


def _one_of(config, key: str, names) -> None:
  v = _get(config, key)
  if v not in names:
    names = sorted(names)
    _fail(key, v, f"is not one of {', '.join(map(repr, names))}", names[0])


def _fields_match(config, section: str, record) -> None:
  """``config.<section>`` holds exactly the record's fields (and ``name``)."""
  node = config[section]
  want, have = {f.name for f in record.fields} | {"name"}, set(node.keys())
  if have != want:
    missing, extra = sorted(want - have), sorted(have - want)
    raise ConfigError(
        f"dfax.train: config.{section} does not fit {section} {record.name!r}: "
        + (f"missing {missing}" if missing else "")
        + ("; " if missing and extra else "") + (f"unexpected {extra}" if extra else "")
        + f". {section.capitalize()} {record.name!r} takes {sorted(want - {'name'})}; start "
        f"the section from dfax.train.{'families' if section == 'model' else 'datasets'}"
        f".get({record.name!r}).section(...) (e.g. configs/{record.example_config}) rather "
        f"than changing {section}.name alone.")


def _choices(config, section: str, record) -> None:
  """Each of the record's fields with fixed ``choices`` holds one of them."""
  for field in record.fields:
    if field.choices:
      _one_of(config, f"{section}.{field.name}", field.choices)


def _model_fields(config) -> None:
  model = config.model
  family = families.FAMILIES[model.name]
  _fields_match(config, "model", family)
  _choices(config, "model", family)
  want = {f.name for f in family.fields}
  for key in ("features", "dense"):
    if key in want:
      v = tuple(model[key])
      if not all(_is_int(f) and f >= 1 for f in v):
        _fail(f"model.{key}", v, "must be integers >= 1", "'(64, 64)'")
  for key in ("d_model", "num_heads", "num_layers", "d_ff", "patch"):
    if key in want:
      _int_at_least(config, f"model.{key}", 1, 4)
  if "pre_logits" in want:
    _int_at_least(config, "model.pre_logits", 0, 4096)
  if "scan_unroll" in want:
    _int_at_least(config, "model.scan_unroll", 1, model.num_layers)
  if {"d_model", "num_heads"} <= want and model.d_model % model.num_heads:
    _fail("model.num_heads", model.num_heads, f"must divide model.d_model={model.d_model}",
          _largest_divisor(model.num_heads, model.d_model))
  _int_at_least(config, "dfa.bp_blocks", 0, 2)
  if config.dfa.bp_blocks:
    if not family.hybrid:
      hybrids = [f.name for f in families.FAMILIES.values() if f.hybrid]
      _fail("dfa.bp_blocks", config.dfa.bp_blocks, f"needs a model whose blocks it can split "
            f"({', '.join(hybrids)}), not {model.name!r}", 0)
    if config.dfa.bp_blocks > model.num_layers:
      _fail("dfa.bp_blocks", config.dfa.bp_blocks, f"is more than model.num_layers="
            f"{model.num_layers}", model.num_layers // 2)
    if not methods.METHODS[config.method].uses_feedback:
      _fail("dfa.bp_blocks", config.dfa.bp_blocks, f"splits a DFA run; method "
            f"{config.method!r} does not use feedback", 0)
  preset = config.dfa.feedback
  if preset and methods.METHODS[config.method].uses_feedback and preset not in family.presets:
    fits = ", ".join(family.presets) or "none; leave it ''"
    _fail("dfa.feedback", preset, f"does not fit model {model.name!r} (its presets: {fits})",
          "''")


def _schema_fields(config) -> None:
  """The config's fields are the schema's (top level and the fixed sections)."""
  schema = config_schema.default_config()
  for section in ("",) + config_schema.FIXED_SECTIONS:
    want = set((schema[section] if section else schema).keys())
    have = set((config[section] if section else config).keys())
    where = f"config.{section}" if section else "the config"
    if want - have:
      raise ConfigError(f"dfax.train: {where} lacks {sorted(want - have)}; start config files "
                        "from dfax.train.config_schema.default_config() (configs/common.py) "
                        "and assign only what they change.")
    if have - want:
      raise ConfigError(f"dfax.train: {where} has unknown fields {sorted(have - want)}; the "
                        "fields are those of dfax.train.config_schema.default_config().")


def check_config(config) -> None:
  """Checks every value that needs no data.

  Args:
    config: the run config (see dfax.train.config_schema).

  Raises:
    ConfigError: naming the first bad key and a valid value.
  """
  _schema_fields(config)
  _one_of(config, "method", methods.METHODS)
  _one_of(config, "model.name", families.FAMILIES)
  _one_of(config, "dataset.name", datasets.DATASETS)
  _one_of(config, "optimizer", OPTIMIZERS)
  _one_of(config, "schedule", SCHEDULES)
  _one_of(config, "dfa.projector", methods.PROJECTORS)
  if config.dfa.feedback:
    _one_of(config, "dfa.feedback", presets.PRESETS)
  _model_fields(config)
  _fields_match(config, "dataset", datasets.DATASETS[config.dataset.name])
  _choices(config, "dataset", datasets.DATASETS[config.dataset.name])
  try:
    methods.check_projector_options(config)
  except ValueError as e:
    raise ConfigError(str(e)) from None
  for key in ("seed", "dfa.seed", "num_steps", "warmup_steps", "alignment_every",
              "dataset.train_limit", "dataset.eval_limit", "dataset.augment_shift",
              "dfa.feature_ndim"):
    if _has(config, key):
      _int_at_least(config, key, 0, {"num_steps": 1000, "dataset.augment_shift": 2}.get(key, 0))
  for key in ("seed", "dfa.seed"):  # jax.random.key keeps 32 bits without x64: bounded
    if _has(config, key) and _get(config, key) > MAX_SEED:
      _fail(key, _get(config, key), f"must be at most {MAX_SEED} (2**31 - 1)", 0)
  for key, example in (("dataset.seq_len", 128), ("dataset.eval_windows", 256)):
    if _has(config, key):
      _int_at_least(config, key, 1, example)
  _int_at_least(config, "mesh.data", 0, 0)  # 0: every device (dfax/train/devices.py)
  for key in ("batch_size", "eval_batch_size", "log_every", "eval_every", "checkpoint_every",
              "max_to_keep", "mesh.model"):
    _int_at_least(config, key, 1, {"max_to_keep": 3}.get(key, 1 if "mesh" in key else 100))
  if config.num_steps == 0:
    _int_at_least(config, "num_epochs", 1, 10)
  _positive_float(config, "learning_rate", 1e-3)
  for key in ("grad_clip", "weight_decay"):
    _positive_float(config, key, 1.0 if key == "grad_clip" else 0.0, allow_zero=True)
  m = config.momentum
  if not isinstance(m, (int, float)) or not 0 <= m < 1:
    _fail("momentum", m, "must be in [0, 1)", 0.9)
  if config.mesh.data == devices.AUTO and all(
      isinstance(config.mesh[k], int) and config.mesh[k] >= 1 for k in ("model", "stage",
                                                                         "microbatches")):
    devices.resolve_data_shards(config)
  pipelined.check_pipeline(config)
  if jax.process_count() > 1 and (config.mesh.model, config.mesh.stage) != (1, 1):
    _fail("mesh.model", config.mesh.model, "must be 1 in a multi-host run, which shards the "
          "batch only (and mesh.stage=1)", 1)
  used = config.mesh.data * config.mesh.model
  if jax.process_count() > 1 and used != jax.device_count():
    _fail("mesh.data", config.mesh.data, f"must use all {jax.device_count()} devices of a "
          "multi-host run", 0)
  if used > jax.device_count():
    _fail("mesh.data", config.mesh.data, f"x mesh.model={config.mesh.model} needs {used} "
          f"devices, this process has {jax.device_count()}", 0)


def check_task(config, task: datasets.TaskData, total_steps: int) -> None:
  """Checks the values that depend on the loaded data.

  Args:
    config: the run config, already through :func:`check_config`.
    task: what ``dfax.train.registry.build`` returned for it.
    total_steps: the run's length in steps.

  Raises:
    ConfigError: naming the key and a valid value.
  """
  limit = config.dataset.get("train_limit", 0)
  if limit and task.train_size and limit > task.train_size:
    _fail("dataset.train_limit", limit, f"is more than the {task.train_size} training "
          "examples", 0)
  examples = limit or task.train_size
  if examples and config.batch_size > examples:
    _fail("batch_size", config.batch_size, f"is more than the {examples} training examples",
          min(128, examples))
  eval_limit = config.dataset.get("eval_limit", 0)
  if eval_limit and task.eval_size and eval_limit > task.eval_size:
    _fail("dataset.eval_limit", eval_limit, f"is more than the {task.eval_size} evaluation "
          "examples", 0)
  shift = config.dataset.augment_shift if "augment_shift" in config.dataset else 0
  if shift and shift >= min(task.input_shape[:2]):
    _fail("dataset.augment_shift", shift, f"must be smaller than the {task.input_shape[:2]} "
          "image", 2)
  patch = config.model.get("patch")
  if patch and any(side % patch for side in task.input_shape[:2]):
    sides = task.input_shape[:2]
    _fail("model.patch", patch, f"does not tile the {sides[0]}x{sides[1]} images into whole "
          "patches", _largest_divisor(patch, *sides))
  if total_steps < 1:
    _fail("num_steps", config.num_steps, "gives a run of 0 steps", 1000)
