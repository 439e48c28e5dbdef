"""MNIST, a residual MLP split into pipeline stages: DFA's bubble-free pipeline.

The model (``dfax.models.stack.StackedMLP``) has ``num_stages`` stages of
scanned residual blocks and a feedback point at every stage's output. With
``--config.mesh.stage=S`` (S = num_stages) it trains over S devices, with
``mesh.microbatches`` microbatches per data shard; ``mesh.stage=1`` runs the same
model on one device with the same gradients. On CPU, fake the devices:

  XLA_FLAGS=--xla_force_host_platform_device_count=4 python -m dfax.train \\
      --config configs/mnist_pipeline.py --workdir workdirs/mnist_pipeline
  ... --config.method=bp                       # GPipe backprop over the same stages
  ... --config.mesh.stage=1 --config.mesh.microbatches=1   # one device, same gradients
"""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from common import base_config, model  # noqa: E402


def get_config():
  c = base_config()
  c.name = "mnist_pipeline"
  c.model = model("stacked_mlp", d=256, d_ff=512, blocks_per_stage=1)
  c.dfa.feedback = "markers"
  c.mesh.stage = 4
  c.mesh.microbatches = 4
  c.num_epochs = 3
  c.batch_size = 128
  c.eval_batch_size = 1000
  return c
