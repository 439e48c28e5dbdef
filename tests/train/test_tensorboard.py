"""TensorBoard event files in the workdir: curves, alignment, learning rate, throughput and
hyperparameters, read back from disk."""

import json
import pathlib
import struct

import pytest

from dfax.train import metrics, optim, tensorboard
from dfax.train.config_file import load_config
from dfax.train.trainer import train_and_evaluate

tensorboardX = pytest.importorskip("tensorboardX")
from tensorboardX.proto import event_pb2, plugin_hparams_pb2  # noqa: E402

SMOKE = pathlib.Path(__file__).resolve().parents[2] / "configs" / "smoke.py"


def read_events(workdir: pathlib.Path):
  """Every event of every event file in workdir, in order (TFRecord framing)."""
  for path in sorted(workdir.glob("events.out.tfevents.*")):
    data, pos = path.read_bytes(), 0
    while pos < len(data):
      (length,) = struct.unpack("<Q", data[pos:pos + 8])
      yield event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
      pos += 12 + length + 4  # length, its CRC, the record, its CRC


def read_scalars(workdir: pathlib.Path) -> dict[str, dict[int, float]]:
  """``{tag: {step: value}}`` of the scalars in workdir's event files."""
  out = {}
  for event in read_events(workdir):
    for value in event.summary.value:
      if not value.metadata.plugin_data.plugin_name:  # the plugins' summaries are not scalars
        out.setdefault(value.tag, {})[event.step] = value.simple_value
  return out


def read_hparams(workdir: pathlib.Path) -> tuple[dict, list[str]]:
  """The HPARAMS dashboard's view: ``({name: value}, [metric tags])`` of the run."""
  values, tags = {}, []
  for event in read_events(workdir):
    for value in event.summary.value:
      if value.metadata.plugin_data.plugin_name != "hparams":
        continue
      data = plugin_hparams_pb2.HParamsPluginData.FromString(
          value.metadata.plugin_data.content)
      for name, v in data.session_start_info.hparams.items():
        values[name] = getattr(v, v.WhichOneof("kind"))
      tags += [m.name.tag for m in data.experiment.metric_infos]
  return values, tags


def test_hparams_are_the_flattened_config(tmp_path):
  config = {"learning_rate": 0.003, "method": "dfa", "progress_bar": False,
            "dfa": {"projector": "gaussian"}, "model": {"features": [64, 64]}, "data_dir": None}
  events = tensorboard.EventWriter(str(tmp_path), purge_step=0, config=config,
                                   metric_tags=["val_loss", "train_loss"])
  events.write({"step": 5, "train_loss": 2.0, "throughput": {"steps_per_s": 12.5}})
  events.close()
  values, tags = read_hparams(tmp_path)
  assert values == {"learning_rate": pytest.approx(0.003), "method": "dfa",
                    "progress_bar": False, "dfa.projector": "gaussian",
                    "model.features": "[64, 64]"}
  assert tags == ["val_loss", "train_loss"]
  assert read_scalars(tmp_path) == {"train_loss": {5: 2.0},
                                    "throughput/steps_per_s": {5: 12.5}}


@pytest.mark.slow
def test_event_files_hold_the_curves_and_the_alignment(tmp_path):
  config = load_config(SMOKE, num_steps=20, log_every=5, eval_every=10, alignment_every=10,
                       checkpoint_every=10, **{"dataset.train_limit": 256,
                                               "dataset.eval_limit": 100,
                                               "eval_batch_size": 100})
  train_and_evaluate(config, str(tmp_path))
  got = read_scalars(tmp_path)
  rows = metrics.read_metrics(str(tmp_path / "metrics.jsonl"))
  want = {(k, r["step"]): v for r in rows for k, v in r.items() if k == "train_loss"}
  assert {(k, s): v for s, v in got["train_loss"].items() for k in ["train_loss"]} == \
      pytest.approx(want)
  # MNIST is evaluated on its test split, and the metrics say so.
  assert sorted(got["test_accuracy"]) == sorted(got["test_loss"]) == [10, 20]
  assert not {"eval_accuracy", "eval_loss", "val_accuracy"} & set(got)
  assert {"alignment/Dense_0", "alignment/Dense_2"} <= set(got)
  assert got["alignment/Dense_2"][20] == pytest.approx(1.0, abs=1e-4)  # exact at the head
  # The learning rate of each logged step's update: the cosine schedule, decaying.
  schedule = optim.make_schedule(config, 20)
  assert got["learning_rate"] == pytest.approx({s: float(schedule(s - 1))
                                                for s in (5, 10, 15, 20)})
  assert got["learning_rate"][5] > got["learning_rate"][20]
  # Throughput at every logged step; examples/s is steps/s times the batch.
  for tag in ("throughput/steps_per_s", "throughput/examples_per_s"):
    assert sorted(got[tag]) == [5, 10, 15, 20] and min(got[tag].values()) > 0, tag
  assert got["throughput/examples_per_s"][20] == pytest.approx(
      config.batch_size * got["throughput/steps_per_s"][20], rel=1e-5)
  assert not any("throughput" in r for r in rows)  # not in metrics.jsonl: not reproducible
  # The config in the HPARAMS dashboard, compared by the test metrics.
  values, tags = read_hparams(tmp_path)
  saved = json.loads((tmp_path / "config.json").read_text())
  assert values["learning_rate"] == pytest.approx(saved["learning_rate"])
  assert values["method"] == "dfa" and values["dfa.projector"] == saved["dfa"]["projector"]
  assert values["num_steps"] == 20 and values["model.features"] == "[64, 64]"
  assert tags == ["test_accuracy", "test_loss", "train_loss"]
