"""CIFAR-10 (tfds ``cifar10``), a wider 3x3 CNN, DFA by default.

dfax does not ship CIFAR-10: prepare it once with tensorflow-datasets on a
machine with the network (needs TensorFlow)::

  tfds build cifar10 --file_format=array_record --data_dir ~/tensorflow_datasets

then point the trainer at that data_dir::

  python -m dfax.train --config configs/cifar10_cnn.py --workdir workdirs/cifar10_dfa \
      --config.data_dir ~/tensorflow_datasets

Images are standardised per channel (dfax.data.cifar10.preprocess); random
translations of up to 4 pixels stand in for the usual pad-and-crop. Untested
here on the real data (no copy on the project's machines); the config is
checked end to end on a generated stand-in (tests/train/test_cifar10.py).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from common import base_config, dataset, model  # noqa: E402


def get_config():
  c = base_config()
  c.name = "cifar10_cnn"
  c.dataset = dataset("cifar10", source="tfds", augment_shift=4)
  # Wide layers: narrow bottlenecks stop DFA from learning on convolutions.
  c.model = model("cnn", features=(64, 128, 256), dense=(1024,), kernel_size=3)
  c.num_epochs = 30
  c.learning_rate = 1e-3
  c.schedule = "cosine"
  return c
