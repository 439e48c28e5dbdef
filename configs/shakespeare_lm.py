"""Character-level Transformer LM on 42 Shakespeare works.

Defaults follow Launay et al. 2020's DFA Transformer: post-LN blocks and one
feedback point after every block ("macro_out"), the error taken before the
vocabulary projection. Under this layout DFA trains every block; with pre-LN
blocks or cuts in front of the blocks it stalls near the zero-feedback
control. Pre-LN stacks learn better cut after every LayerNorm
(``--config.dfa.feedback=after_ln``); docs/feedback_points.md has the numbers.
Deeper stacks train better with a longer warm-up and a higher peak learning rate
(``--config.model.num_layers=8 --config.warmup_steps=600 --config.learning_rate=5e-3``,
docs/depth.md, the depth table); at these 4 blocks that schedule helps DFA and backprop
alike, so the defaults keep 100 warm-up steps at 3e-3.
At 8 post-LN blocks backprop trains at 3e-3 only with GPT-2's residual initialisation
(``--config.model.residual_init=depth``, docs/depth.md, the post-LN baseline).
``--config.model.scan_unroll=4`` unrolls the blocks' loop: the same model, whose DFA
gradient then skips every input cotangent it discards, and whose gradients (DFA and
backprop alike) ran about 1.3x faster on a 2-core CPU (docs/depth.md, the step at its
floor).

  python -m dfax.train --config configs/shakespeare_lm.py --workdir workdirs/shakespeare_dfa
  python -m dfax.train --config configs/shakespeare_lm.py --workdir workdirs/shakespeare_bp \
      --config.method=bp
"""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from common import base_config, dataset, model  # noqa: E402


def get_config():
  c = base_config()
  c.name = "shakespeare_lm"
  c.dataset = dataset("shakespeare")  # seq_len 128
  c.model = model("transformer_lm", norm="post")  # d_model 128, 4 layers, error at the hidden state
  c.dfa.feedback = "macro_out"
  c.batch_size = 32
  c.num_steps = 2000
  c.learning_rate = 3e-3
  c.schedule = "warmup_cosine"
  c.warmup_steps = 100
  c.grad_clip = 1.0
  c.eval_every = 250
  c.eval_batch_size = 64
  c.alignment_every = 250
  return c
