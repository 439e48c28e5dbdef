"""The depth benchmark's levers: each record names real settings, and the two it implements work."""

from __future__ import annotations

import importlib.util
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dfax
from dfax.models import TransformerConfig, TransformerLM

BENCHMARKS = pathlib.Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def lm_depth():
  spec = importlib.util.spec_from_file_location("bench_lm_depth", BENCHMARKS / "lm_depth.py")
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module  # its dataclasses look their module up there
  spec.loader.exec_module(module)
  return module


def test_every_lever_sets_only_arguments_the_benchmark_has_and_changes_one(lm_depth):
  defaults = vars(lm_depth.parse([]))
  for name, lever in lm_depth.LEVERS.items():
    assert lever.settings and set(lever.settings) <= set(defaults), name
    assert any(defaults[k] != v for k, v in lever.settings.items()), f"{name} changes nothing"
    changed = lm_depth.with_lever(lm_depth.parse([]), name)
    assert all(getattr(changed, k) == v for k, v in lever.settings.items())


def test_an_unknown_lever_is_refused_naming_the_choices(lm_depth):
  with pytest.raises(SystemExit, match="unknown lever 'nope'; choose from .*macro"):
    lm_depth.with_lever(lm_depth.parse([]), "nope")


def test_depth_scaled_init_scales_only_the_residual_output_kernels(lm_depth):
  model = TransformerLM(TransformerConfig(vocab_size=11, d_model=16, num_heads=2, num_layers=3,
                                          d_ff=32, max_len=8))
  params = model.init(jax.random.key(0), jnp.zeros((1, 8), jnp.int32))
  scaled = lm_depth.depth_scaled(params, 3)
  flat, flat_scaled = (dict(jax.tree_util.tree_leaves_with_path(p)) for p in (params, scaled))
  residual_outputs = {"attn/out/kernel", "fc2/kernel"}
  for path, leaf in flat.items():
    name = "/".join(k.key for k in path[2:])
    expected = leaf / np.sqrt(6) if name in residual_outputs else leaf
    np.testing.assert_allclose(flat_scaled[path], expected, rtol=1e-6, err_msg=name)


def test_rms_normalised_feedback_has_unit_rms_per_token(lm_depth):
  points = [dfax.PointSpec("a", (2, 5, 7), "float32"),
            dfax.PointSpec("b", (2, 5, 3), "float32")]
  error = jax.random.normal(jax.random.key(0), (2, 5, 4)) * 3.0
  proj = lm_depth.rms_normalised(dfax.projectors.gaussian(jax.random.key(1)))
  for c in proj(error, points):
    np.testing.assert_allclose(jnp.sqrt(jnp.mean(c ** 2, axis=-1)), 1.0, rtol=1e-5)
