"""curves.png and alignment.png: what they draw and how they label it."""

import importlib.util
import json
import math
import pathlib

from dfax.train import plots


def _alignment_rows():
  return [{"step": s, "alignment": {"Dense_0": 0.1 * k, "Dense_1": 0.2 * k,
                                    "Dense_2": 1.0 - 3e-7 * k}}
          for k, s in enumerate((10, 20, 30), start=1)]


def test_the_output_layer_is_named_one_by_construction(tmp_path):
  fig = plots.plot_alignment(_alignment_rows(), str(tmp_path / "alignment.png"), "run")
  ax = fig.axes[0]
  labels = [t.get_text() for t in ax.get_legend().get_texts()]
  assert labels == ["Dense_0", "Dense_1", "output layer (Dense_2): 1 by construction"]
  # One curve per hidden layer; the output layer is the dotted line at 1, not a curve.
  curves = [line for line in ax.get_lines() if len(line.get_xdata()) == 3]
  assert [line.get_label() for line in curves] == ["Dense_0", "Dense_1"]
  (exact,) = [line for line in ax.get_lines() if line.get_label().startswith("output")]
  assert list(exact.get_ydata()) == [1.0, 1.0] and exact.get_linestyle() == ":"
  assert (tmp_path / "alignment.png").stat().st_size > 0


def test_a_layer_below_one_is_a_curve_and_several_exact_layers_are_named(tmp_path):
  # An LM cut after every block: the final norm and the head follow the last cut.
  rows = [{"step": 10, "alignment": {"blocks/0": 0.3, "blocks/1": 1.0, "ln_f": 1.0,
                                     "head": 1.0}},
          {"step": 20, "alignment": {"blocks/0": 0.4, "blocks/1": 0.9, "ln_f": 1.0,
                                     "head": 1.0}}]
  fig = plots.plot_alignment(rows, str(tmp_path / "a.png"))
  labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
  # blocks/1 reached 1 once only: it keeps its own curve.
  assert labels == ["blocks/0", "blocks/1",
                    "after the last feedback point (ln_f, head): 1 by construction"]


def test_curves_name_the_split_and_read_older_rows(tmp_path):
  rows = [{"step": 5, "train_loss": 2.0},
          {"step": 10, "eval_loss": 1.5, "eval_accuracy": 0.5},  # an older dfax's row
          {"step": 20, "test_loss": 1.0, "test_accuracy": 0.75},
          {"step": 20, "alignment": {"Dense_0": 0.1}}]
  fig = plots.plot_curves(rows, str(tmp_path / "curves.png"), split="test")
  ax_loss, ax_acc = fig.axes
  assert ax_acc.get_ylabel() == "test accuracy (%)"
  assert [t.get_text() for t in ax_loss.get_legend().get_texts()] == ["train", "test"]
  (acc,) = ax_acc.get_lines()
  assert list(acc.get_xdata()) == [10, 20] and list(acc.get_ydata()) == [50.0, 75.0]

  val = [{"step": 10, "val_loss": 1.2, "val_accuracy": 0.4}, {"step": 20, "val_loss": None,
                                                               "val_accuracy": 0.5}]
  fig = plots.plot_curves(val, str(tmp_path / "val.png"), split="val")
  assert fig.axes[1].get_ylabel() == "val accuracy (%)"
  loss = fig.axes[0].get_lines()[1]
  assert loss.get_label() == "val" and loss.get_ydata()[0] == 1.2
  assert math.isnan(loss.get_ydata()[1])  # a non-finite loss (None in metrics.jsonl): a gap


def _compare_runs():
  spec = importlib.util.spec_from_file_location(
      "compare_runs", pathlib.Path(__file__).resolve().parents[2] / "scripts" / "compare_runs.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _workdir(path, rows, results):
  path.mkdir()
  (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  (path / "results.json").write_text(json.dumps(
      {"method": "dfa", "steps": 20, "wall_time_s": 3.0, **results}))
  return str(path)


def test_compare_runs_reads_each_runs_split_and_older_workdirs(tmp_path, capsys):
  new = _workdir(tmp_path / "new", [{"step": 10, "val_loss": 2.0, "val_accuracy": 0.3},
                                    {"step": 20, "val_loss": 1.5, "val_accuracy": 0.4}],
                 {"eval_split": "val", "val_loss": 1.5, "val_accuracy": 0.4})
  old = _workdir(tmp_path / "old", [{"step": 10, "eval_loss": 2.5, "eval_accuracy": 0.2}],
                 {"test_loss": 2.5, "test_accuracy": 0.2})  # before the split was named
  _compare_runs().main([new, "--metric", "loss", "--out", str(tmp_path / "val.png")])
  out = capsys.readouterr().out
  assert "| run | method | val accuracy | val loss |" in out
  assert "| new | dfa | 40.00% | 1.5000 | 20 | 3 s |" in out
  _compare_runs().main([new, old, "--metric", "eval_accuracy", "--out", str(tmp_path / "a.png")])
  out = capsys.readouterr().out
  assert "| run | method | eval accuracy | eval loss |" in out  # two splits: named as such
  assert "| old | dfa | 20.00% | 2.5000 | 20 | 3 s |" in out
  assert (tmp_path / "a.png").stat().st_size > 0
