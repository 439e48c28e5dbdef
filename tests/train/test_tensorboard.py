"""TensorBoard event files in the workdir: curves and alignment, read back from disk."""

import pathlib
import struct

import pytest

from dfax.train import metrics
from dfax.train.config_file import load_config
from dfax.train.trainer import train_and_evaluate

tensorboardX = pytest.importorskip("tensorboardX")
from tensorboardX.proto import event_pb2  # noqa: E402

SMOKE = pathlib.Path(__file__).resolve().parents[2] / "configs" / "smoke.py"


def read_scalars(workdir: pathlib.Path) -> dict[str, dict[int, float]]:
  """``{tag: {step: value}}`` from every event file in workdir (TFRecord framing)."""
  out = {}
  for path in sorted(workdir.glob("events.out.tfevents.*")):
    data, pos = path.read_bytes(), 0
    while pos < len(data):
      (length,) = struct.unpack("<Q", data[pos:pos + 8])
      event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
      pos += 12 + length + 4  # length, its CRC, the record, its CRC
      for value in event.summary.value:
        out.setdefault(value.tag, {})[event.step] = value.simple_value
  return out


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
  assert sorted(got["eval_accuracy"]) == [10, 20]
  assert {"alignment/Dense_0", "alignment/Dense_2"} <= set(got)
  assert got["alignment/Dense_2"][20] == pytest.approx(1.0, abs=1e-4)  # exact at the head
