"""MNIST, small CNN (2 conv + 1 hidden dense), DFA by default.

  python -m dfax.train --config configs/mnist_cnn.py --workdir workdirs/mnist_cnn_dfa
"""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from common import base_config  # noqa: E402


def get_config():
  c = base_config()
  c.name = "mnist_cnn"
  c.model = c.model.__class__({"name": "cnn", "features": (32, 64), "dense": (256,),
                               "activation": "relu", "kernel_size": 5,
                               "pool": "max"})
  c.num_epochs = 5
  c.learning_rate = 1e-3
  return c
