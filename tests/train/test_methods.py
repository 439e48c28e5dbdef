"""The config's projector options reach the projector, and bad combinations are refused."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dfax
from dfax.train.config_file import load_config
from dfax.train.methods import make_feedback, make_projector

SMOKE = pathlib.Path(__file__).resolve().parents[2] / "configs" / "smoke.py"


def test_tie_copies_and_feature_ndim_reach_the_projector():
  config = load_config(SMOKE, **{"dfa.tie_copies": True, "dfa.feature_ndim": 1})
  e = jax.random.normal(jax.random.key(0), (2, 10))
  spec = dfax.PointSpec("blocks/in", (3, 2, 4, 6), jnp.float32, stack_ndim=1)
  (got,) = make_projector(config)(e, [spec])
  (want,) = dfax.projectors.gaussian(jax.random.key(config.dfa.seed), scale=config.dfa.scale,
                                     tie_copies=True, feature_ndim=1)(e, [spec])
  np.testing.assert_array_equal(got, want)
  np.testing.assert_array_equal(got[2, :, 3], got[0, :, 0])


def test_shared_projector_takes_reuse_tie_copies_and_feature_ndim():
  config = load_config(SMOKE, **{"dfa.projector": "shared", "dfa.reuse": True,
                                 "dfa.tie_copies": True, "dfa.feature_ndim": 1})
  e = jax.random.normal(jax.random.key(0), (2, 10))
  specs = [dfax.PointSpec("blocks/ln", (3, 2, 4, 6), jnp.float32, stack_ndim=1),
           dfax.PointSpec("ln_final", (2, 6), jnp.float32)]
  stream, final = make_projector(config)(e, specs)
  np.testing.assert_array_equal(stream[2, :, 3], final)  # one signal for every copy


def test_the_opu_takes_the_layout_options():
  config = load_config(SMOKE, **{"dfa.projector": "opu", "dfa.tie_copies": True,
                                 "dfa.feature_ndim": 1})
  spec = dfax.PointSpec("blocks/in", (3, 4, 8), "float32", stack_ndim=1)
  out = make_projector(config, step=0)(jnp.ones((4, 5)), [spec])[0]
  np.testing.assert_allclose(out[0], out[2], rtol=1e-6)  # the layers share one slice


def test_projector_options_on_other_projectors_are_refused():
  config = load_config(SMOKE, **{"dfa.projector": "opu", "dfa.scale": "point"})
  with pytest.raises(ValueError, match="projector=gaussian"):
    make_projector(config)
  config = load_config(SMOKE, **{"dfa.reuse": True})
  with pytest.raises(ValueError, match="projector=shared"):
    make_projector(config)


def test_unknown_feedback_preset_names_the_presets():
  config = load_config(SMOKE, **{"dfa.feedback": "macro-out"})
  with pytest.raises(ValueError, match="macro_out, micro"):
    make_feedback(config)
