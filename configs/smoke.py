"""A tiny run for CI: a small MLP on 1024 MNIST examples for 150 steps."""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from common import base_config  # noqa: E402


def get_config():
  c = base_config()
  c.name = "smoke"
  c.dataset.source = "local"
  c.dataset.train_limit = 1024
  c.dataset.eval_limit = 500
  c.model.features = (64, 64)
  c.batch_size = 64
  c.num_steps = 150
  c.log_every = 25
  c.eval_every = 75
  c.alignment_every = 50
  c.checkpoint_every = 50
  c.eval_batch_size = 250
  c.progress_bar = False
  return c
