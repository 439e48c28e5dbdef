"""What a run shows and how it names it: the progress bar, the evaluated split in every metric
name (test for MNIST, val for Shakespeare), and workdirs written before the split was named."""

import json
import pathlib
import shutil

import pytest

from dfax.train import metrics, plots, trainer
from dfax.train.config_file import load_config
from dfax.train.trainer import train_and_evaluate

REPO = pathlib.Path(__file__).resolve().parents[2]
SMALL = {"num_steps": 20, "log_every": 5, "eval_every": 10, "alignment_every": 10,
         "checkpoint_every": 10, "max_to_keep": 5, "dataset.train_limit": 256,
         "dataset.eval_limit": 100, "eval_batch_size": 100, "tensorboard": False}
TINY_LM = {"model.d_model": 16, "model.num_heads": 2, "model.num_layers": 1, "model.d_ff": 32,
           "dataset.seq_len": 16, "dataset.eval_windows": 8, "batch_size": 8, "num_steps": 4,
           "warmup_steps": 1, "log_every": 2, "eval_every": 2, "alignment_every": 4,
           "checkpoint_every": 4, "eval_batch_size": 8, "tensorboard": False}


class RecordingBar:
  """Stands in for tqdm: records what the trainer shows."""

  def __init__(self, *args, **kwargs):
    self.kwargs, self.postfixes = kwargs, []
    RecordingBar.last = self

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    return False

  def set_postfix(self, ordered_dict=None, refresh=True, **kwargs):
    self.postfixes.append({**(ordered_dict or {}), **kwargs})

  def update(self, n=1):
    pass


def _smoke(**overrides):
  return load_config(REPO / "configs" / "smoke.py", **{**SMALL, **overrides})


def test_progress_bar_and_metrics_of_an_mnist_run(tmp_path, monkeypatch):
  monkeypatch.setattr(trainer, "tqdm", RecordingBar)
  results = train_and_evaluate(_smoke(num_steps=10), str(tmp_path))
  shown = RecordingBar.last.postfixes
  rows = metrics.read_metrics(str(tmp_path / "metrics.jsonl"))
  # The bar: before the first evaluation (step 10), the loss and the speed only; then the
  # test accuracy too. The last evaluation is of the final parameters: results.json's.
  assert list(shown[0]) == ["loss", "steps/s"]
  assert shown[0]["loss"] == f"{rows[0]['train_loss']:.4f}"
  last = shown[-1]
  assert list(last) == ["loss", "test_acc", "steps/s"]
  assert last["test_acc"] == f"{100 * results['test_accuracy']:.2f}%"
  assert float(last["steps/s"]) > 0
  assert "rate" not in RecordingBar.last.kwargs["bar_format"]  # tqdm's own it/s: not shown
  # MNIST is evaluated on its test set: every name says test.
  saved = json.loads((tmp_path / "results.json").read_text())
  assert saved["eval_split"] == results["eval_split"] == "test"
  assert 0 <= saved["test_accuracy"] <= 1 and saved["test_loss"] > 0
  evals = [r for r in rows if "test_accuracy" in r]
  assert [r["step"] for r in evals] == [10] and set(evals[0]) == {"step", "test_loss",
                                                                  "test_accuracy"}
  assert not any(k.startswith(("eval_", "val_")) for r in rows for k in r)
  assert [r["step"] for r in rows if "learning_rate" in r] == [5, 10]


@pytest.mark.slow
def test_shakespeare_metrics_name_the_val_split(tmp_path, monkeypatch):
  monkeypatch.setattr(trainer, "tqdm", RecordingBar)
  config = load_config(REPO / "configs" / "shakespeare_lm.py", **TINY_LM)
  results = train_and_evaluate(config, str(tmp_path))
  assert results["eval_split"] == "val" and results["val_loss"] > 0
  assert not {"test_loss", "test_accuracy", "eval_loss"} & set(results)
  rows = metrics.read_metrics(str(tmp_path / "metrics.jsonl"))
  assert [r["step"] for r in rows if "val_loss" in r] == [2, 4]
  assert not any(k.startswith(("eval_", "test_")) for r in rows for k in r)
  # An LM's bar shows the validation loss (its per-token accuracy says little).
  last = RecordingBar.last.postfixes[-1]
  assert list(last) == ["loss", "val_loss", "steps/s"]
  assert last["val_loss"] == f"{results['val_loss']:.4f}"
  assert metrics.final_eval(results) == ("val", results["val_accuracy"], results["val_loss"])


@pytest.mark.slow
def test_resuming_a_workdir_of_an_older_dfax_keeps_its_curve(tmp_path, monkeypatch):
  """A workdir whose rows say eval_* (before the split was named) resumes; its plot is whole."""
  train_and_evaluate(_smoke(), str(tmp_path / "full"))
  old = tmp_path / "old"
  (old / "checkpoints").mkdir(parents=True)
  shutil.copytree(tmp_path / "full" / "checkpoints" / "10", old / "checkpoints" / "10")
  for name in ("config.json", "data.json"):
    shutil.copy(tmp_path / "full" / name, old / name)
  lines = [json.loads(line) for line in (tmp_path / "full" / "metrics.jsonl").open()]
  older = [{k.replace("test_", "eval_"): v for k, v in r.items() if k != "learning_rate"}
           for r in lines if r["step"] <= 10]
  (old / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in older))
  drawn = []
  plot_curves = plots.plot_curves
  monkeypatch.setattr(plots, "plot_curves", lambda *a, **k: drawn.append(plot_curves(*a, **k)))
  results = train_and_evaluate(_smoke(), str(old))
  assert results["resumed_from"] == 10 and results["eval_split"] == "test"
  (accuracy,) = drawn[0].axes[1].get_lines()
  assert list(accuracy.get_xdata()) == [10, 20]  # step 10 from the eval_accuracy row
  rows = metrics.read_metrics(str(old / "metrics.jsonl"))
  assert [r["step"] for r in rows if "eval_accuracy" in r] == [10]
  assert [r["step"] for r in rows if "test_accuracy" in r] == [20]
