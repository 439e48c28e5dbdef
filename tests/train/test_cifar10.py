"""CIFAR-10: the loader and configs/cifar10_cnn.py, offline on a generated stand-in."""

import json
import pathlib

import jax
import numpy as np
import pytest

from dfax.data import Dataset, cifar10, tfds_source
from dfax.train import registry
from dfax.train.config_file import load_config
from dfax.train.trainer import train_and_evaluate

CONFIG = pathlib.Path(__file__).resolve().parents[2] / "configs" / "cifar10_cnn.py"


def _stand_in(n_train=96, n_test=40, seed=0):
  """uint8 images as tfds returns them: class k has a bright k-th row band, so it is learnable."""
  rng = np.random.default_rng(seed)

  def split(n):
    y = rng.integers(0, 10, n)
    x = rng.integers(0, 60, (n, 32, 32, 3))
    for i, k in enumerate(y):
      x[i, 3 * k:3 * k + 3] = 250
    return x.astype(np.uint8), y.astype(np.int64)

  x_train, y_train = split(n_train)
  x_test, y_test = split(n_test)
  return Dataset(x_train, y_train, x_test, y_test, num_classes=10, name="cifar10")


@pytest.fixture
def fake_tfds(monkeypatch):
  calls = []

  def load_tfds(name, data_dir=None, download=True):
    calls.append((name, data_dir))
    return _stand_in()

  monkeypatch.setattr(tfds_source, "load_tfds", load_tfds)
  return calls


def test_loader_scales_standardises_and_passes_data_dir(fake_tfds, tmp_path):
  ds = cifar10.load_cifar10(tmp_path, standardize=False)
  assert fake_tfds == [("cifar10", str(tmp_path))]
  assert ds.x_train.shape == (96, 32, 32, 3) and ds.x_train.dtype == np.float32
  assert 0.0 <= ds.x_train.min() and ds.x_train.max() == pytest.approx(250 / 255)
  assert ds.y_train.dtype == np.int32 and ds.num_classes == 10
  std = cifar10.load_cifar10(tmp_path)
  np.testing.assert_allclose(std.x_test, (ds.x_test - cifar10.MEAN) / cifar10.STD, rtol=1e-6)


def test_wrong_image_shape_is_named():
  with pytest.raises(ValueError, match=r"\(N, 32, 32, 3\)"):
    cifar10.preprocess(np.zeros((2, 28, 28, 1), np.uint8))


def test_config_trains_end_to_end_on_the_stand_in(fake_tfds, tmp_path):
  config = load_config(CONFIG, **{"num_steps": 4, "batch_size": 16, "eval_every": 4,
                                  "alignment_every": 0, "log_every": 2, "checkpoint_every": 4,
                                  "eval_batch_size": 40, "model.features": (4,),
                                  "model.dense": (8,), "tensorboard": False,
                                  "progress_bar": False, "data_dir": str(tmp_path)})
  model, task = registry.build(config)
  assert task.input_shape == (32, 32, 3) and task.num_classes == 10
  results = train_and_evaluate(config, str(tmp_path / "run"))
  assert results["steps"] == 4 and np.isfinite(results["test_loss"])
  assert results["status"] == "completed"
  rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
  assert [r["step"] for r in rows if "train_loss" in r] == [2, 4]
  params = sum(np.size(v) for v in jax.tree.leaves(
      model.init(jax.random.key(0), np.zeros((1, 32, 32, 3), np.float32))))
  assert params == 3 * 3 * 3 * 4 + 4 + 16 * 16 * 4 * 8 + 8 + 8 * 10 + 10  # 3x3 conv, 32 -> 16


def test_other_sources_are_refused(fake_tfds, tmp_path):
  config = load_config(CONFIG, **{"dataset.source": "local", "data_dir": str(tmp_path)})
  with pytest.raises(ValueError, match="source=tfds"):
    registry.build(config)


@pytest.mark.parametrize("overrides, match", [
    ({"model.kernel_size": 0}, "kernel_size"),
    ({"model.pool": "median"}, "model.pool='median' is not one of 'avg', 'max'")])
def test_bad_cnn_fields_are_refused_before_writing(fake_tfds, tmp_path, overrides, match):
  config = load_config(CONFIG, data_dir=str(tmp_path), batch_size=16, **overrides)
  with pytest.raises(ValueError, match=match):
    train_and_evaluate(config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()
