"""The config schema: every field the trainer reads and its default, in one place."""

from __future__ import annotations

import dataclasses

import ml_collections

from dfax.opu import OPUConfig

# Sections whose fields are fixed here; model and dataset fields depend on their names.
FIXED_SECTIONS = ("dfa", "mesh")


def default_config() -> ml_collections.ConfigDict:
  """Every field the trainer reads, with its default: the one place defaults live.

  Config files (configs/) start from this and assign what they change; the
  ``model`` and ``dataset`` sections may be replaced whole by those of another
  model or dataset (their fields: ``registry.MODEL_FIELDS`` and
  ``registry.DATASET_FIELDS``).

  Returns:
    A fresh ConfigDict.

  Example::

    c = default_config()
    c.num_steps, c.method = 1000, "bp"
  """
  c = ml_collections.ConfigDict()
  c.name = "run"
  c.method = "dfa"          # dfa | bp | shallow
  c.seed = 0
  c.data_dir = ""           # local data root ('' = $DFAX_DATA_DIR, else the shipped copy)
  c.dataset = ml_collections.ConfigDict({"name": "mnist", "source": "auto", "train_limit": 0,
                                         "eval_limit": 0,
                                         "augment_shift": 0})  # random translation, pixels
  c.model = ml_collections.ConfigDict({"name": "mlp", "features": (800, 800),
                                       "activation": "tanh"})
  c.batch_size = 128
  c.num_epochs = 10
  c.num_steps = 0           # >0 overrides num_epochs
  c.optimizer = "adam"      # adam | sgd | rmsprop
  c.learning_rate = 1e-3
  c.schedule = "cosine"     # constant | cosine | warmup_cosine
  c.warmup_steps = 0
  c.weight_decay = 0.0
  c.momentum = 0.9
  c.nesterov = False
  c.grad_clip = 0.0
  c.freeze = ""  # comma-separated top-level modules that get no update, e.g. "patch_embed"
  c.dfa = ml_collections.ConfigDict({"projector": "gaussian", "seed": 0, "scale": "error",
                                     "feedback": "",
                                     "tie_layers": False,  # scanned layers share B
                                     "feature_ndim": 0,  # >0: share B over the other dims
                                     "reuse": False,  # shared: equal-width points, one signal
                                     "opu": dataclasses.asdict(OPUConfig())})
  # data x model mesh; or data x stage (pipeline, microbatches per data shard).
  # data=0: as many data shards as the devices allow (dfax/train/devices.py).
  c.mesh = ml_collections.ConfigDict({"data": 0, "model": 1, "stage": 1, "microbatches": 1})
  c.log_every = 50
  c.eval_every = 500
  c.eval_batch_size = 1000
  c.alignment_every = 500
  c.checkpoint_every = 1000
  c.max_to_keep = 3
  c.progress_bar = True
  c.tensorboard = True      # event files in the workdir (needs tensorboardX, the train extra)
  return c
