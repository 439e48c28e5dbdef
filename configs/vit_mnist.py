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
                                       "remat": False, "norm": "pre"})
  c.dfa.feedback = "macro"
  # The error is per image but the points are per token: every token gets the
  # same feedback column, so the tokens are pushed the way the pooled head sees.
  c.dfa.feature_ndim = 1
  c.num_epochs = 3
  c.schedule = "warmup_cosine"
  c.warmup_steps = 200
  # No global-norm clipping: DFA's hidden updates are far larger than the
  # head's true gradient, and a global clip would squash the head's updates.
  c.grad_clip = 0.0
  return c
