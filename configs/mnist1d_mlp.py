"""MNIST-1D (Greydanus 2020), tanh MLP 2x1024; published backprop MLP: 68% test accuracy.

  python -m dfax.train --config configs/mnist1d_mlp.py --workdir workdirs/mnist1d_dfa
"""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from common import base_config, dataset  # noqa: E402


def get_config():
  c = base_config()
  c.name = "mnist1d_mlp"
  c.dataset = dataset("mnist1d")
  c.model.features = (1024, 1024)  # DFA aligns better with width
  c.model.activation = "tanh"
  c.batch_size = 100
  c.num_steps = 10000
  c.learning_rate = 1e-3
  c.weight_decay = 0.0
  c.eval_every = 400
  c.alignment_every = 400
  c.checkpoint_every = 2000
  return c
