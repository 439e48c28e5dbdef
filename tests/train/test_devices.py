"""The trainer shards its batch over every device unless told otherwise."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from dfax.train import checkpoint
from dfax.train.config_file import load_config
from dfax.train.devices import auto_data_shards
from dfax.train.errors import ConfigError
from dfax.train.validate import check_config

REPO = pathlib.Path(__file__).resolve().parents[2]
SMOKE = REPO / "configs" / "smoke.py"
SMALL = ["--config.num_steps=8", "--config.eval_every=4", "--config.log_every=2",
         "--config.alignment_every=0", "--config.dataset.train_limit=256",
         "--config.dataset.eval_limit=100", "--config.eval_batch_size=100",
         "--config.batch_size=32", "--config.progress_bar=False"]


def _cli(workdir, devices: int, *extra):
  env = {**os.environ, "JAX_PLATFORMS": "cpu",
         "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
  done = subprocess.run([sys.executable, "-m", "dfax.train", "--config", str(SMOKE),
                         "--workdir", str(workdir), *SMALL, *extra], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]
  return json.loads((workdir / "results.json").read_text())


@pytest.mark.slow
def test_cli_uses_all_eight_devices_by_default_and_equals_one_device(tmp_path):
  eight = _cli(tmp_path / "eight", 8)  # no mesh flag
  one = _cli(tmp_path / "one", 8, "--config.mesh.data=1")
  saved = json.loads((tmp_path / "eight" / "config.json").read_text())
  assert eight["devices"] == 8 and saved["mesh"]["data"] == 8
  assert one["devices"] == 1
  assert eight["test_loss"] == pytest.approx(one["test_loss"], rel=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
               checkpoint.restore_params(str(tmp_path / "eight"))[1],
               checkpoint.restore_params(str(tmp_path / "one"))[1])


def test_auto_shards_fit_the_batch_and_the_other_mesh_axes():
  assert auto_data_shards(1, 128) == 1
  assert auto_data_shards(8, 96) == 8
  assert auto_data_shards(8, 36) == 6
  assert auto_data_shards(8, 7) == 7
  assert auto_data_shards(8, 13) == 1  # a prime batch larger than the devices
  assert auto_data_shards(8, 64, per_shard=4, microbatches=4, eval_batch_size=100) == 2
  assert auto_data_shards(3, 64, per_shard=4) == 1  # fewer devices than one shard needs


def test_check_config_resolves_auto_and_refuses_negative_or_too_many():
  config = load_config(SMOKE)
  assert config.mesh.data == 0  # the default: every device
  check_config(config)
  assert config.mesh.data == jax.device_count()  # smoke's batch divides the 8 host devices
  with pytest.raises(ConfigError, match=r"mesh\.data=-1 .*--config\.mesh\.data=0"):
    check_config(load_config(SMOKE, **{"mesh.data": -1}))
  with pytest.raises(ConfigError, match=r"needs 64 devices"):
    check_config(load_config(SMOKE, **{"mesh.data": 64}))
