"""A small ViT on MNIST (7x7 patches, 16 tokens) with a tanh pre-logits layer, trained by DFA.

  python -m dfax.train --config configs/vit_mnist.py --workdir workdirs/vit_mnist_dfa

Cuts after every LayerNorm and in front of the head ("after_ln_head"): the
4096-wide pre-logits layer trains from its own feedback and only the head is
exact. With an MLP width of 1024 in every block, ten epochs reach
95.17 +- 0.02% (3 seeds). With MLP width 512 the pre-logits layer frozen at its
random initialisation does as well as trained (94.98% against 94.94%, one seed),
so the layer helps as a wide random expansion and DFA's work is in the blocks.
See docs/results_vision.md.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from common import base_config, model  # noqa: E402


def get_config():
  c = base_config()
  c.name = "vit_mnist"
  c.model = model("vit", d_ff=1024, pre_logits=4096)  # 7x7 patches, d_model 64, 4 layers
  # Cut after every LayerNorm (the normalised copies of the residual stream that
  # the sublayers and the pre-logits layer read): a cut on the raw pre-LN
  # residual stream lets DFA push it without bound, and cuts in front of the
  # blocks ("macro") learn less than their own zero-feedback control on this
  # ViT. The cut in front of the head gives the wide pre-logits layer feedback
  # of its own, as DFA gives every hidden layer of an MLP.
  c.dfa.feedback = "after_ln_head"
  # The error is per image but the points are per token: every token gets the
  # same feedback column, so the tokens are pushed the way the pooled head sees.
  c.dfa.feature_ndim = 1
  c.num_epochs = 10
  c.learning_rate = 2e-3
  c.schedule = "warmup_cosine"
  c.warmup_steps = 200
  # No global-norm clipping: DFA's hidden updates are far larger than the
  # head's true gradient, and a global clip would squash the head's updates.
  c.grad_clip = 0.0
  return c
