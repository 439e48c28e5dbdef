"""Optimizers from the config: schedules, frozen modules."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dfax.train.config_file import load_config
from dfax.train.optim import make_optimizer, make_schedule

SMOKE = pathlib.Path(__file__).resolve().parents[2] / "configs" / "smoke.py"
PARAMS = {"params": {"embed": {"embedding": jnp.ones((5, 3))},
                     "blocks": {"kernel": jnp.ones((2, 3, 3))},
                     "head": {"kernel": jnp.ones((3, 4))}}}


def test_warmup_longer_than_the_run_names_the_fix():
  config = load_config(SMOKE, **{"schedule": "warmup_cosine", "warmup_steps": 200})
  with pytest.raises(ValueError, match="--config.warmup_steps"):
    make_schedule(config, 20)
  assert float(make_schedule(config, 400)(200)) == pytest.approx(config.learning_rate)


def test_frozen_modules_get_exactly_zero_update():
  config = load_config(SMOKE, **{"freeze": "embed, blocks"})
  opt = make_optimizer(config, 10)
  grads = jax.tree.map(jnp.ones_like, PARAMS)
  updates, _ = opt.update(grads, opt.init(PARAMS), PARAMS)
  assert not np.any(updates["params"]["embed"]["embedding"])
  assert not np.any(updates["params"]["blocks"]["kernel"])
  assert np.all(updates["params"]["head"]["kernel"] != 0)


def test_freezing_an_unknown_module_names_the_real_ones():
  config = load_config(SMOKE, **{"freeze": "patch_embed"})
  with pytest.raises(ValueError, match=r"choose among \['embed', 'blocks', 'head'\]"):
    make_optimizer(config, 10).init(PARAMS)
