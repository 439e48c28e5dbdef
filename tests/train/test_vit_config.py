"""configs/vit_mnist.py end to end: its layout and its pre-logits layer.

Which parameters its zero-feedback control moves (the head alone) is checked on a
small ViT in tests/models/test_transformer.py.
"""

import pathlib

import numpy as np
import pytest

from dfax.train.config_file import load_config
from dfax.train.metrics import read_metrics
from dfax.train.trainer import train_and_evaluate

CONFIG = pathlib.Path(__file__).resolve().parents[2] / "configs" / "vit_mnist.py"
SHORT = {"num_steps": 4, "batch_size": 16, "eval_every": 4, "log_every": 2,
         "checkpoint_every": 4, "dataset.source": "local", "dataset.train_limit": 64,
         "dataset.eval_limit": 50, "eval_batch_size": 50, "tensorboard": False,
         "progress_bar": False, "warmup_steps": 1}


@pytest.mark.slow
def test_dfa_run_logs_the_alignment_of_every_layer_and_the_head_is_exact(tmp_path):
  config = load_config(CONFIG, **SHORT, alignment_every=2)
  results = train_and_evaluate(config, str(tmp_path / "dfa"))
  assert results["status"] == "completed" and np.isfinite(results["test_loss"])
  rows = read_metrics(str(tmp_path / "dfa" / "metrics.jsonl"))
  cosines = [r["alignment"] for r in rows if "alignment" in r]
  assert len(cosines) == 2
  for cos in cosines:
    assert set(cos) == {"patch_embed", "pos_embed", "blocks/0", "blocks/1", "blocks/2",
                        "blocks/3", "ln_final", "pre_logits", "head"}
    assert abs(cos["head"] - 1.0) < 1e-4      # the only exact layer: after the last cut
    assert cos["pre_logits"] < 0.999          # trained from its own feedback, not backprop
