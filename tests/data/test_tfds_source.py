"""tensorflow-datasets without TensorFlow: prepared data reads, offline fails fast."""

import time

import numpy as np
import pytest

from dfax.data import DataUnavailableError, load_tfds, tfds_source

tfds = tfds_source.import_tfds()


class DfaxTestTinyDigits(tfds.core.GeneratorBasedBuilder):
  """A 9-example data set prepared locally (no download, no TensorFlow)."""

  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=(4, 4, 1), dtype=np.uint8),
            "label": tfds.features.ClassLabel(num_classes=3),
        }),
        supervised_keys=("image", "label"))

  def _split_generators(self, dl_manager):
    return {"train": self._generate_examples(6), "test": self._generate_examples(3)}

  def _generate_examples(self, n):
    for i in range(n):
      yield i, {"image": np.full((4, 4, 1), i, np.uint8), "label": i % 3}


def _check_tiny(ds):
  assert ds.x_train.shape == (6, 4, 4, 1) and ds.x_test.shape == (3, 4, 4, 1)
  assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int32
  assert ds.num_classes == 3 and ds.name == "dfax_test_tiny_digits"
  assert sorted(ds.x_train[:, 0, 0, 0]) == list(range(6))
  np.testing.assert_array_equal(ds.y_train, ds.x_train[:, 0, 0, 0] % 3)  # pairs kept


def test_reads_prepared_array_record_without_network(tmp_path, monkeypatch):
  tfds.builder("dfax_test_tiny_digits", data_dir=str(tmp_path),
               file_format="array_record").download_and_prepare()
  monkeypatch.setattr(tfds_source, "has_network", lambda *a, **k: pytest.fail("checked network"))
  _check_tiny(load_tfds("dfax_test_tiny_digits", data_dir=str(tmp_path)))


def test_prepares_when_hosts_answer(tmp_path, monkeypatch):
  monkeypatch.setattr(tfds_source, "has_network", lambda *a, **k: True)
  _check_tiny(load_tfds("dfax_test_tiny_digits", data_dir=str(tmp_path)))


def test_offline_fails_fast_and_names_the_fix(tmp_path, monkeypatch):
  def no_download(builder, name):
    pytest.skip("this machine reaches the download host; offline behaviour not testable")
  monkeypatch.setattr(tfds_source, "_prepare", no_download)
  start = time.monotonic()
  with pytest.raises(DataUnavailableError) as info:
    load_tfds("mnist", data_dir=str(tmp_path))
  assert time.monotonic() - start < 10
  message = str(info.value)
  for needle in ("no network", "--config.data_dir", "DFAX_DATA_DIR", str(tmp_path),
                 "train-images-idx3-ubyte.gz"):
    assert needle in message


def test_offline_message_when_check_fails(tmp_path, monkeypatch):
  monkeypatch.setattr(tfds_source, "has_network", lambda *a, **k: False)
  with pytest.raises(DataUnavailableError, match="no network.*DFAX_DATA_DIR"):
    load_tfds("mnist", data_dir=str(tmp_path))
  with pytest.raises(DataUnavailableError, match="download=False"):
    load_tfds("mnist", data_dir=str(tmp_path), download=False)


def test_missing_tensorflow_for_prepare_is_explained():
  class Builder:
    data_dir = "/nowhere"

    def download_and_prepare(self):
      raise ModuleNotFoundError("No module named 'tensorflow'", name="tensorflow")

  with pytest.raises(DataUnavailableError, match="needs TensorFlow to prepare 'mnist'"):
    tfds_source._prepare(Builder(), "mnist")


def test_has_network_unreachable_is_quick():
  start = time.monotonic()
  assert not has_network_closed_port()
  assert time.monotonic() - start < 3


def has_network_closed_port():
  # Port 9 on loopback: nothing listens there, so the connection is refused at once.
  return tfds_source.has_network("127.0.0.1", port=9, timeout=1.0)


def test_records_to_arrays():
  rows = [{"image": np.full((2,), i), "label": i} for i in range(5)]
  x, y = tfds_source.records_to_arrays(rows, ("image", "label"))
  assert x.shape == (5, 2) and y.tolist() == [0, 1, 2, 3, 4]
