"""Character-level Transformer LM on 42 Shakespeare works; DFA "macro" by default.

  python -m dfax.train --config configs/shakespeare_lm.py --workdir workdirs/shakespeare_dfa
  python -m dfax.train --config configs/shakespeare_lm.py --workdir workdirs/shakespeare_bp \
      --config.method=bp
"""

import os
import sys

import ml_collections

sys.path.insert(0, os.path.dirname(__file__))
from common import base_config  # noqa: E402


def get_config():
  c = base_config()
  c.name = "shakespeare_lm"
  c.dataset = ml_collections.ConfigDict({"name": "shakespeare", "source": "local",
                                         "seq_len": 128, "eval_windows": 256,
                                         "train_limit": 0, "eval_limit": 0})
  c.model = ml_collections.ConfigDict({"name": "transformer_lm", "d_model": 128,
                                       "num_heads": 4, "num_layers": 4, "d_ff": 512,
                                       "remat": False, "error_at": "hidden"})
  c.dfa.feedback = "macro"
  c.batch_size = 32
  c.num_steps = 2000
  c.learning_rate = 1e-3
  c.schedule = "warmup_cosine"
  c.warmup_steps = 100
  c.grad_clip = 1.0
  c.eval_every = 250
  c.eval_batch_size = 64
  c.alignment_every = 250
  return c
