"""The config schema: every field the trainer reads, its default and its help, in one place.

``FIELDS`` holds one ``Field`` record per config field (dotted name, default,
one-line help). ``default_config()`` builds the trainer's defaults from them,
``python -m dfax.train --help`` lists them, and ``scripts/gen_config_docs.py``
writes them to the docs' config reference (docs/config.md).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import ml_collections

from dfax.opu import OPUConfig

# Sections whose fields are fixed here; model and dataset fields depend on their names.
FIXED_SECTIONS = ("dfa", "mesh")


@dataclasses.dataclass(frozen=True)
class Field:
  """One config field: what ``--config.<name>=<value>`` sets.

  Attributes:
    name: dotted path in the config, e.g. ``"dfa.projector"``.
    default: the value ``default_config()`` gives it.
    help: one line saying what it does (allowed values, units).
  """

  name: str
  default: Any
  help: str


# One line per OPUConfig field (dfax.opu.OPUConfig's docstring has the details).
_OPU_HELP = {
    "ternarize": "send the error as two binary frames (a DMD is binary)",
    "threshold": "ternarisation threshold, in per-example error stds",
    "topk": "if set, the fraction of entries switched on (overrides threshold)",
    "intensity": "measure intensities and recover the linear part with the anchor",
    "anchor_amplitude": "amplitude of the reference field per camera pixel",
    "bits": "camera bit depth; None: no quantisation",
    "full_scale": "intensity that saturates the camera",
    "noise": "add shot and read noise",
    "photons_per_unit": "photo-electrons per unit intensity (shot noise)",
    "read_noise": "read-noise std, as a fraction of full_scale",
    "fast_noise": "draw the noise with dfax.opu.noise.fast_normal",
    "tile": "camera columns simulated at once (bounds memory)",
}

FIELDS: tuple[Field, ...] = (
    Field("name", "run", "run name, written to results.json and plot titles"),
    Field("method", "dfa", "dfa | bp (backprop) | shallow (only the last layer trains)"),
    Field("seed", 0, "parameter initialisation and data-order seed"),
    Field("data_dir", "", "local data root; '' reads $DFAX_DATA_DIR, else the shipped copy"),
    Field("dataset.name", "mnist", "mnist | mnist1d | cifar10 | shakespeare"),
    Field("dataset.source", "auto",
          "auto | local | download | tfds: where the data comes from (dfax.data.load_mnist)"),
    Field("dataset.train_limit", 0, "use only the first N training examples; 0: all"),
    Field("dataset.eval_limit", 0, "evaluate on only the first N test examples; 0: all"),
    Field("dataset.augment_shift", 0, "random translation of training images, in pixels"),
    Field("model.name", "mlp",
          "mlp | cnn | vit | transformer_lm | stacked_mlp; each has its own model.* fields"),
    Field("model.features", (800, 800), "widths of the MLP's hidden layers"),
    Field("model.activation", "tanh", "hidden activation (dfax.models.ACTIVATIONS)"),
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
    Field("dfa.projector", "gaussian",
          "gaussian | uniform | hadamard | shared | opu | zeros (control) | identity"),
    Field("dfa.seed", 0, "seed of the fixed random feedback matrices"),
    Field("dfa.scale", "error",
          "feedback scale: 'error' (1/sqrt(error size)), 'point' or a number"),
    Field("dfa.feedback", "",
          "feedback preset (dfax.models.presets); '' cuts in front of every Dense and Conv"),
    Field("dfa.tie_layers", False, "layers of an nn.scan share one feedback matrix"),
    Field("dfa.feature_ndim", 0, "> 0: one matrix over the last N dims, shared over the rest"),
    Field("dfa.reuse", False, "shared projector: equal-width points receive one signal"),
    *(Field(f"dfa.opu.{name}", value, f"OPU: {_OPU_HELP[name]}")
      for name, value in dataclasses.asdict(OPUConfig()).items()),
    Field("mesh.data", 0, "data shards; 0: as many as the devices allow"),
    Field("mesh.model", 1, "model (tensor) shards of each kernel"),
    Field("mesh.stage", 1, "pipeline stages (stacked_mlp model; mesh.model must be 1)"),
    Field("mesh.microbatches", 1, "pipeline microbatches per data shard"),
    Field("log_every", 50, "steps between training-loss rows in metrics.jsonl"),
    Field("eval_every", 500, "steps between evaluations on the test split"),
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
  ``model`` and ``dataset`` sections may be replaced whole by those of another
  model or dataset (their fields: ``registry.MODEL_FIELDS`` and
  ``registry.DATASET_FIELDS``).

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
    node[leaf] = field.default
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
      --config.method='dfa'            dfa | bp (backprop) | shallow (only the last layer trains)
  """
  lines = []
  for f in FIELDS:
    flag = f"  --config.{f.name}={_show(f.default)}"
    if len(flag) < width:
      lines.append(f"{flag:<{width}} {f.help}")
    else:
      lines += [flag, f"{'':<{width}} {f.help}"]
  return "\n".join(lines)
