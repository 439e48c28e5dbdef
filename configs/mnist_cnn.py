"""MNIST, small CNN (2 conv 3x3 + 1 wide hidden dense), DFA by default.

  python -m dfax.train --config configs/mnist_cnn.py --workdir workdirs/mnist_cnn_dfa

The hidden dense layer is wide (1024): with DFA the conv layers' updates barely
align with backprop's, so most of the learning happens in the dense layers, and
a narrow one is a bottleneck (1 epoch: 86.2% with 5x5 convs and 256 units,
92.1% with 3x3 convs, 96.2% with 3x3 convs and 1024 units); see
docs/results_vision.md.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from common import base_config  # noqa: E402


def get_config():
  c = base_config()
  c.name = "mnist_cnn"
  c.model = c.model.__class__({"name": "cnn", "features": (32, 64), "dense": (1024,),
                               "activation": "relu", "kernel_size": 3, "pool": "max"})
  c.num_epochs = 5
  c.learning_rate = 1e-3
  return c
