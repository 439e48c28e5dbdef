"""A small ViT on MNIST (7x7 patches, 16 tokens), DFA "macro" by default."""

import os
import sys

import ml_collections

sys.path.insert(0, os.path.dirname(__file__))
from common import base_config  # noqa: E402


def get_config():
  c = base_config()
  c.name = "vit_mnist"
  c.model = ml_collections.ConfigDict({"name": "vit", "patch": 7, "d_model": 64,
                                       "num_heads": 4, "num_layers": 4, "d_ff": 128,
                                       "remat": False})
  c.dfa.feedback = "macro"
  c.num_epochs = 3
  c.schedule = "warmup_cosine"
  c.warmup_steps = 200
  c.grad_clip = 1.0
  return c
