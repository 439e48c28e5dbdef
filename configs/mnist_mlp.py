"""MNIST, tanh MLP 2x800 (Nøkland 2016's setup), DFA by default.

Trained 30 epochs on images shifted at random by up to 2 pixels (the plain
setup without augmentation: --config.dataset.augment_shift=0).

  python -m dfax.train --config configs/mnist_mlp.py --workdir workdirs/mnist_mlp_dfa
  python -m dfax.train --config configs/mnist_mlp.py --workdir workdirs/mnist_mlp_bp \
      --config.method=bp
"""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from common import base_config  # noqa: E402


def get_config():
  c = base_config()
  c.name = "mnist_mlp"
  c.model.features = (800, 800)
  c.dataset.augment_shift = 2
  c.num_epochs = 30
  c.learning_rate = 1e-3
  return c
