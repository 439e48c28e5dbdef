"""A ~1.1B-parameter decoder-only Transformer for ahead-of-time compilation only.

  python benchmarks/compile_1b.py    # lowers and compiles the DFA step on an 8-device mesh
"""

import ml_collections


def get_config():
  c = ml_collections.ConfigDict()
  c.vocab_size = 32000
  c.d_model = 2048
  c.num_heads = 16
  c.num_layers = 20
  c.d_ff = 8192
  c.seq_len = 1024
  c.batch_size = 8
  c.remat = True
  c.mesh = ml_collections.ConfigDict({"data": 2, "model": 4})
  return c
