"""The config schema: every field the trainer reads, its default and its help, in one place.

``FIELDS`` holds one ``Field`` record per config field (dotted name, default,
one-line help). ``default_config()`` builds the trainer's defaults from them,
``python -m dfax.train --help`` lists them, and ``scripts/gen_config_docs.py``
writes them to the docs' config reference (docs/config.md).
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

import ml_collections

from dfax.opu import OPUConfig
from dfax.train import datasets, families, methods
from dfax.train.field import Field

# Sections whose fields are fixed here; model and dataset fields depend on their names.
FIXED_SECTIONS = ("dfa", "mesh")


# One line per OPUConfig field (dfax.opu.OPUConfig's docstring has the details).
_OPU_HELP = {
    "ternarize": "send the error as two binary frames (a DMD is binary)",
    "threshold": "ternarisation threshold, in per-example error stds",
    "topk": "if set, the fraction of entries switched on (overrides threshold)",
    "input_bits": "if set, send sign-separated bit planes of this many bits, not one ternary pair",
    "intensity": "measure intensities and recover the linear part with the anchor",
    "anchor_amplitude": "amplitude of the reference field per camera pixel",
    "anchor_keep": "fraction of camera pixels used, those with the strongest anchor",
    "bits": "camera bit depth; None: no quantisation",
    "full_scale": "intensity that saturates the camera",
    "noise": "add shot and read noise",
    "photons_per_unit": "photo-electrons per unit intensity (shot noise)",
    "read_noise": "read-noise std, as a fraction of full_scale",
    "fast_noise": "draw the noise with dfax.opu.noise.fast_normal",
    "tile": "camera columns simulated at once (bounds memory)",
}

def _value_type(hint: Any) -> type:
  """``int`` for ``int | None``: the type of a value an optional field can be set to."""
  args = [a for a in typing.get_args(hint) if a is not type(None)]
  return args[0] if args else hint


_OPU_TYPES = {name: _value_type(hint) for name, hint in typing.get_type_hints(OPUConfig).items()}

DEFAULT_MODEL, DEFAULT_DATASET = "mlp", "mnist"


def _choices(records: dict) -> str:
  return " | ".join(records)


def _readers(option: str) -> str:
  return " | ".join(p.name for p in methods.PROJECTORS.values() if option in p.options)


def _hybrid_families() -> str:
  return " | ".join(f.name for f in families.FAMILIES.values() if f.hybrid)


def _section_fields(section: str, record) -> tuple[Field, ...]:
  return tuple(Field(f"{section}.{f.name}", f.default, f.help) for f in record.fields)


FIELDS: tuple[Field, ...] = (
    Field("name", "run", "run name, written to results.json and plot titles"),
    Field("method", "dfa", _choices(methods.METHODS)),
    Field("seed", 0, "parameter initialisation and data-order seed"),
    Field("data_dir", "", "local data root; '' reads $DFAX_DATA_DIR, else the shipped copy"),
    Field("dataset.name", DEFAULT_DATASET,
          f"{_choices(datasets.DATASETS)}; each has its own dataset.* fields"),
    *_section_fields("dataset", datasets.DATASETS[DEFAULT_DATASET]),
    Field("model.name", DEFAULT_MODEL,
          f"{_choices(families.FAMILIES)}; each has its own model.* fields"),
    *_section_fields("model", families.FAMILIES[DEFAULT_MODEL]),
    Field("batch_size", 128, "training examples per step (the global batch)"),
    Field("num_epochs", 10, "training epochs, when num_steps is 0"),
    Field("num_steps", 0, "training steps; > 0 overrides num_epochs"),
    Field("optimizer", "adam", "adam | sgd | rmsprop"),
    Field("learning_rate", 1e-3, "peak learning rate"),
    Field("schedule", "cosine", "constant | cosine | warmup_cosine"),
    Field("warmup_steps", 0, "linear warm-up steps of warmup_cosine"),
    Field("weight_decay", 0.0, "decoupled weight decay of adam (optax.adamw); 0: none"),
    Field("momentum", 0.9, "momentum of sgd and rmsprop, in [0, 1)"),
    Field("nesterov", False, "Nesterov momentum for sgd"),
    Field("grad_clip", 0.0, "clip gradients to this global norm; 0: no clipping"),
    Field("freeze", "",
          "comma-separated top-level modules that get no update, e.g. 'patch_embed'"),
    Field("dfa.projector", "gaussian", _choices(methods.PROJECTORS)),
    Field("dfa.seed", 0, "seed of the fixed random feedback matrices"),
    Field("dfa.scale", "error",
          "feedback scale: 'error' (1/sqrt(error size)), 'point' or a number"
          f" ({_readers('scale')})"),
    Field("dfa.feedback", "",
          "feedback preset (dfax.models.presets); '' cuts in front of every Dense and Conv"),
    Field("dfa.tie_copies", False,
          f"layers of an nn.scan share one feedback matrix ({_readers('tie_copies')})"),
    Field("dfa.feature_ndim", 0, "> 0: one matrix over the last N dims, shared over the rest"
          f" ({_readers('feature_ndim')})"),
    Field("dfa.bp_blocks", 0, "hybrid: the last K blocks (and the head) train by exact backprop, "
          f"the rest by DFA ({_hybrid_families()})"),
    Field("dfa.reuse", False, "equal-width points receive one signal (TinyDFA;"
          f" {_readers('reuse')})"),
    *(Field(f"dfa.opu.{name}", value, f"OPU: {_OPU_HELP[name]}", type=_OPU_TYPES[name])
      for name, value in dataclasses.asdict(OPUConfig()).items()),
    Field("mesh.data", 0, "data shards; 0: as many as the devices allow"),
    Field("mesh.model", 1, "model (tensor) shards of each kernel"),
    Field("mesh.stage", 1, "pipeline stages (stacked_mlp model; mesh.model must be 1)"),
    Field("mesh.microbatches", 1, "pipeline microbatches per data shard"),
    Field("log_every", 50, "steps between training-loss rows in metrics.jsonl"),
    Field("eval_every", 500,
          "steps between evaluations on the data set's evaluation split (test; shakespeare: val)"),
    Field("eval_batch_size", 1000, "examples per evaluation batch"),
    Field("alignment_every", 500,
          "steps between DFA/backprop gradient-alignment measurements; 0: never"),
    Field("checkpoint_every", 1000, "steps between checkpoints"),
    Field("max_to_keep", 3, "checkpoints kept in the workdir"),
    Field("progress_bar", True, "show a progress bar (tqdm) while training"),
    Field("tensorboard", True, "write TensorBoard event files to the workdir (tensorboardX)"),
)


def default_config() -> ml_collections.ConfigDict:
  """Every field the trainer reads, with its default, built from ``FIELDS``.

  Config files (configs/) start from this and assign what they change; the
  ``model`` and ``dataset`` sections may be replaced whole by another
  family's or data set's (``families.get(name).section(...)``,
  ``datasets.get(name).section(...)``).

  Returns:
    A fresh ConfigDict.

  Examples:
    >>> c = default_config()
    >>> c.method, c.dataset.name, c.dfa.opu.bits
    ('dfa', 'mnist', 8)
    >>> c.method = "bp"
  """
  tree: dict[str, Any] = {}
  for field in FIELDS:
    *sections, leaf = field.name.split(".")
    node = tree
    for section in sections:
      node = node.setdefault(section, {})
    node[leaf] = field.config_value()
  return ml_collections.ConfigDict(tree)


def _show(value: Any) -> str:
  return repr(value)


def fields_table() -> str:
  """The fields as a Markdown table (name, default, help), for docs/config.md.

  Returns:
    The table, one row per ``Field``.

  Examples:
    >>> print(fields_table().splitlines()[2])
    | `name` | `'run'` | run name, written to results.json and plot titles |
  """
  rows = ["| field | default | what it sets |", "|---|---|---|"]
  for f in FIELDS:
    rows.append(f"| `{f.name}` | `{_show(f.default)}` | {f.help.replace('|', '&#124;')} |")
  return "\n".join(rows)


def fields_help(width: int = 34) -> str:
  """The fields as plain text for ``--help``: ``--config.NAME=DEFAULT  help``.

  Args:
    width: the column where the help text starts.

  Returns:
    One line per ``Field``.

  Examples:
    >>> print(fields_help().splitlines()[1])
      --config.method='dfa'            dfa | bp | shallow
  """
  lines = []
  for f in FIELDS:
    flag = f"  --config.{f.name}={_show(f.default)}"
    if len(flag) < width:
      lines.append(f"{flag:<{width}} {f.help}")
    else:
      lines += [flag, f"{'':<{width}} {f.help}"]
  return "\n".join(lines)


RECORD_TABLES = (("methods", "config.method", lambda: methods.METHODS),
                 ("projectors", "config.dfa.projector", lambda: methods.PROJECTORS),
                 ("model families", "config.model.name", lambda: families.FAMILIES),
                 ("data sets", "config.dataset.name", lambda: datasets.DATASETS))


def choices_help(width: int = 34) -> str:
  """Every method, projector, model family and data set with its one line, for ``--help``.

  Returns:
    One block per kind of record, one line per record.

  Examples:
    >>> print(choices_help().splitlines()[1])
      dfa                              Direct Feedback Alignment (dfax.dfa_value_and_grad)
  """
  lines = []
  for kind, key, records in RECORD_TABLES:
    lines.append(f"{key} ({kind}):")
    lines += [f"  {name:<{width - 2}} {record.help}" for name, record in records().items()]
  return "\n".join(lines)
