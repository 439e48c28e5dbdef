"""A ~1.1B-parameter decoder-only Transformer LM, for ahead-of-time compilation only.

On the one config schema (dfax.train.config_schema); the model is built from
``config.model`` by dfax.train.registry as the trainer builds it. Nothing is
trained or loaded: ``dataset.seq_len`` sets the sequence length, and the
vocabulary, which a run would take from its data, is ``VOCAB_SIZE``.

  python benchmarks/compile_1b.py    # lowers and compiles the DFA step on a 2x4 mesh
"""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from common import base_config, dataset, model  # noqa: E402

VOCAB_SIZE = 32000  # a subword tokenizer's vocabulary (the data's num_classes in a run)


def get_config():
  c = base_config()
  c.name = "lm_1b"
  c.dataset = dataset("shakespeare", seq_len=1024)
  c.model = model("transformer_lm", d_model=2048, num_heads=16, num_layers=20, d_ff=8192,
                  remat=True)
  c.dfa.feedback = "macro"
  c.batch_size = 8
  c.learning_rate = 1e-4
  c.schedule = "constant"
  c.num_steps = 1
  c.mesh.data, c.mesh.model = 2, 4
  return c
