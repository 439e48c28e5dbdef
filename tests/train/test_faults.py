"""Faults a run must survive without losing, corrupting or silently mixing work (issue 13).

Each test reproduces one case on the smoke config: a non-finite loss, damaged
checkpoints, two processes, a changed config, a torn metrics file, bad
values, signals, a full disk, kill -9 during a save. docs/reliability.md
describes the guarantees these tests check.
"""

import errno
import dataclasses
import functools
import gc
import json
import logging
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from dfax.train import checkpoint, datasets, metrics
from dfax.train.config_file import load_config
from dfax.train.errors import (ConfigChangedError, ConfigError, NonFiniteLossError, ResumeError,
                               WorkdirBusyError, WriteFailedError)
from dfax.train.trainer import train_and_evaluate

REPO = pathlib.Path(__file__).resolve().parents[2]
SMOKE = REPO / "configs" / "smoke.py"
SMALL = {"num_steps": 12, "checkpoint_every": 4, "eval_every": 6, "log_every": 2,
         "alignment_every": 0, "max_to_keep": 10, "dataset.train_limit": 256,
         "dataset.eval_limit": 100, "eval_batch_size": 100, "batch_size": 32,
         "model.features": (32,), "method": "bp",
         "mesh.data": 1}  # one device in-process and in subprocesses alike: bitwise comparable
# One device, compiled as this process compiles (its XLA_FLAGS less the device count): runs
# here and in the subprocess are compared bit for bit.
ENV = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": " ".join(
    flag for flag in os.environ.get("XLA_FLAGS", "").split() if "device_count" not in flag)}


def _config(**overrides):
  return load_config(SMOKE, **{**SMALL, **overrides})


def _cli_args(**overrides):
  return [f"--config.{k}={v}"
          for k, v in {**SMALL, **overrides}.items()]


def _cli(workdir, *extra):
  return [sys.executable, "-m", "dfax.train", "--config", str(SMOKE), "--workdir",
          str(workdir), *extra]


def _params(workdir, step=None):
  return checkpoint.restore_params(str(workdir), step)


def _same(a, b):
  jax.tree.map(lambda u, v: np.testing.assert_array_equal(np.asarray(u), np.asarray(v)), a, b)


def _files(workdir):
  """Every file under workdir with its bytes, except the (emptied) lock."""
  out = {}
  for root, _, names in os.walk(workdir):
    for n in names:
      p = os.path.join(root, n)
      if n != "lock":
        out[os.path.relpath(p, workdir)] = open(p, "rb").read()
  return out


def _like_mnist(name, load):
  """A dataset record like mnist's, loaded by ``load`` (no files to fingerprint)."""
  return dataclasses.replace(datasets.DATASETS["mnist"], name=name, load=load, identify=None)


def _poisoned(bad_step, what):
  """A dataset like mnist whose batch ``bad_step`` has a NaN pixel or a bad label."""

  def build(config):
    task = datasets.mnist(config)

    def batches(start):
      for step, (x, y) in enumerate(task.train_batches(start), start=start):
        if step == bad_step:
          x, y = x.copy(), y.copy()
          if what == "nan":
            x[0, 3, 3, 0] = np.nan
          else:
            y[0] = 12
        yield x, y

    return datasets.TaskData(batches, task.x_eval, task.y_eval, task.num_classes,
                             task.steps_per_epoch, task.input_shape, task.train_size,
                             task.eval_size)

  return build


@pytest.fixture(scope="module", autouse=True)
def _mnist_loaded_once():
  """Every run here loads the same MNIST: load it once (the trainer itself does not cache)."""
  cached = functools.lru_cache(maxsize=None)(datasets.dfax_data.load_mnist)
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(datasets.dfax_data, "load_mnist", cached)
    yield


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """An uninterrupted 12-step run: its workdir (read-only for the tests)."""
  workdir = tmp_path_factory.mktemp("reference") / "run"
  train_and_evaluate(_config(), str(workdir))
  return workdir


@pytest.fixture
def orbax_failures_finalised():
  """Finalises, inside the test that expects them, the reads orbax abandons when IO fails.

  Orbax leaves the pending reads of a failed restore to the garbage collector; their
  "exception ignored" warnings would otherwise surface in whichever later test runs when
  the collector does.
  """
  yield
  gc.collect()


# 1. A non-finite loss keeps the last finite state, names the step and the batch.

@pytest.mark.slow
def test_bad_batch_is_named_and_can_be_skipped(tmp_path, monkeypatch):
  monkeypatch.setitem(datasets.DATASETS, "poisoned", _like_mnist("poisoned", _poisoned(9, "nan")))
  config = _config(**{"dataset.name": "poisoned"})
  with pytest.raises(NonFiniteLossError, match="step 9 is not finite.*1 non-finite input value"
                     r".*--skip_batches=9"):
    train_and_evaluate(config, str(tmp_path))
  step, params = _params(tmp_path)
  assert step == 8  # the last state whose loss was finite
  assert all(np.isfinite(np.asarray(a)).all() for a in jax.tree.leaves(params))
  results = train_and_evaluate(config, str(tmp_path), skip_batches=[9])
  assert results["status"] == "completed" and results["steps"] == 12
  assert results["skipped_batches"] == [9] and results["resumed_from"] == 8
  rows = metrics.read_metrics(str(tmp_path / "metrics.jsonl"))
  assert {"step": 10, "skipped_batch": 9} in rows


def test_labels_out_of_range_are_named(tmp_path, monkeypatch):
  monkeypatch.setitem(datasets.DATASETS, "poisoned", _like_mnist("poisoned", _poisoned(2, "label")))
  with pytest.raises(NonFiniteLossError, match=r"step 2 is not finite.*1 label\(s\) outside "
                     r"\[0, 10\) \(e.g. 12\)"):
    train_and_evaluate(_config(**{"dataset.name": "poisoned"}), str(tmp_path))


def test_divergence_resumes_with_an_allowed_lower_learning_rate(tmp_path):
  with pytest.raises(NonFiniteLossError, match="batch is fine.*--allow_changes=learning_rate"):
    train_and_evaluate(_config(learning_rate=1e38, optimizer="sgd", momentum=0.0),
                       str(tmp_path))
  step, params = _params(tmp_path)
  assert all(np.isfinite(np.asarray(a)).all() for a in jax.tree.leaves(params))
  results = train_and_evaluate(_config(learning_rate=1e-3, optimizer="sgd", momentum=0.0),
                               str(tmp_path), allow_changes=["learning_rate"])
  assert results["status"] == "completed" and results["resumed_from"] == step
  assert np.isfinite(results["test_loss"])
  assert results["config_changes"][0]["changes"]["learning_rate"]["to"] == 1e-3


# 2. A damaged latest checkpoint falls back to the newest readable one.

def _truncate(folder):
  path = max((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
  path.write_bytes(path.read_bytes()[:100])


def _flip(folder):
  path = max((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
  data = bytearray(path.read_bytes())
  data[len(data) // 2:len(data) // 2 + 8] = bytes(b ^ 0xFF for b in data[len(data) // 2:][:8])
  path.write_bytes(bytes(data))


def _no_metadata(folder):
  (folder / "default" / "_METADATA").unlink()


def _truncate_unchecked(folder):  # no checksums: orbax's own failure to restore is the signal
  (folder.parents[1] / "checksums" / f"{folder.name}.json").unlink()
  _truncate(folder)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # orbax, failed IO
@pytest.mark.parametrize("damage", [_truncate, _flip, _no_metadata, _truncate_unchecked])
def test_damaged_latest_checkpoint_falls_back(tmp_path, reference, damage, caplog,
                                              orbax_failures_finalised):
  workdir = tmp_path / "run"
  shutil.copytree(reference, workdir)
  (workdir / "results.json").unlink()  # as if killed right after the last save
  damage(workdir / "checkpoints" / "12")
  (workdir / "checkpoints" / "16").mkdir()  # an empty step folder
  (workdir / "checkpoints" / "notes").mkdir()  # a stray folder
  with caplog.at_level(logging.WARNING):
    results = train_and_evaluate(_config(), str(workdir))
  assert results["resumed_from"] == 8 and results["steps"] == 12
  log = caplog.text
  assert "skipped checkpoint 12" in log and "skipped checkpoint 16: an empty folder" in log
  assert "ignored checkpoints/notes: not a step folder" in log
  assert (workdir / "checkpoints_set_aside" / "12").is_dir()  # kept, not deleted
  _same(_params(workdir)[1], _params(reference)[1])


def test_no_readable_checkpoint_is_refused_and_changes_nothing(tmp_path, reference):
  workdir = tmp_path / "run"
  shutil.copytree(reference, workdir)
  for step in ("4", "8", "12"):
    _no_metadata(workdir / "checkpoints" / step)
  before = _files(workdir)
  with pytest.raises(ResumeError, match="no readable checkpoint.*step 12.*step 4"):
    train_and_evaluate(_config(), str(workdir))
  assert _files(workdir) == before


# 4. A changed config is refused with its differences, unless allowed; refusals write nothing.

@pytest.mark.slow
def test_changed_config_is_refused_then_allowed_and_recorded(tmp_path, reference):
  workdir = tmp_path / "run"
  shutil.copytree(reference, workdir)
  before = _files(workdir)
  with pytest.raises(ConfigChangedError, match=r"(?s)method: 'bp' -> 'dfa'.*num_steps: 12 -> 16"
                     r".*--allow_changes=method,num_steps"):
    train_and_evaluate(_config(method="dfa", num_steps=16), str(workdir))
  with pytest.raises(ConfigError, match="config.dfa.projector='gausian'"):
    train_and_evaluate(_config(**{"dfa.projector": "gausian"}), str(workdir))
  with pytest.raises(ResumeError, match="different model or optimizer.*new --workdir"):
    train_and_evaluate(_config(**{"model.features": (48,)}), str(workdir),
                       allow_changes=["model"])
  assert _files(workdir) == before
  again = train_and_evaluate(_config(), str(workdir))  # a completed run: reported, unchanged
  assert again["already_completed"] and again["test_loss"] == json.loads(
      before["results.json"])["test_loss"]
  assert _files(workdir) == before
  results = train_and_evaluate(_config(method="dfa", num_steps=16), str(workdir),
                               allow_changes=["method", "num_steps"])
  assert results["status"] == "completed" and results["resumed_from"] == 12
  (change,) = [json.loads(line) for line in open(workdir / "changes.jsonl")]
  assert change["step"] == 12 and change["changes"]["method"] == {
      "from": "bp", "to": "dfa", "kind": "allowed"}
  assert json.loads((workdir / "config.json").read_text())["method"] == "dfa"
  assert results["config_changes"] == [change]


# 5. metrics.jsonl: a torn last line is tolerated; truncation on resume is atomic.

def test_torn_metrics_line_is_dropped_and_named(tmp_path, reference, caplog):
  workdir = tmp_path / "run"
  shutil.copytree(reference, workdir)
  (workdir / "results.json").unlink()
  shutil.rmtree(workdir / "checkpoints" / "12")
  with open(workdir / "metrics.jsonl", "a") as f:
    f.write('{"step": 13, "train_lo')
  with caplog.at_level(logging.WARNING):
    train_and_evaluate(_config(), str(workdir))
  assert f"last line of {workdir / 'metrics.jsonl'} was torn" in caplog.text
  rows = metrics.read_metrics(str(workdir / "metrics.jsonl"))
  assert rows == metrics.read_metrics(str(reference / "metrics.jsonl"))


def test_metrics_truncation_is_atomic(tmp_path, reference, monkeypatch):
  path = tmp_path / "metrics.jsonl"
  shutil.copy(reference / "metrics.jsonl", path)
  before = path.read_bytes()

  def killed(*args):
    raise KeyboardInterrupt  # as if the process died just before the rename

  monkeypatch.setattr(os, "replace", killed)
  with pytest.raises(KeyboardInterrupt):
    metrics.MetricsWriter(str(tmp_path), resume_step=4)
  assert path.read_bytes() == before  # the old file, whole
  monkeypatch.undo()
  metrics.MetricsWriter(str(tmp_path), resume_step=4)
  assert max(r["step"] for r in metrics.read_metrics(str(path))) == 4


def test_a_damaged_line_before_the_last_is_named(tmp_path):
  (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2, "tr\n{"step": 3}\n')
  with pytest.raises(ResumeError, match=r"metrics.jsonl line 2 is not JSON"):
    metrics.MetricsWriter(str(tmp_path), resume_step=3)


# 6 and 7. Every bad value is refused before anything is written, naming the key.

@pytest.mark.parametrize("overrides, key", [
    ({"learning_rate": -1.0}, "learning_rate"), ({"learning_rate": float("nan")}, "learning_rate"),
    ({"grad_clip": -1.0}, "grad_clip"), ({"dataset.train_limit": -5}, "dataset.train_limit"),
    ({"dataset.augment_shift": 100}, "dataset.augment_shift"), ({"num_steps": -5}, "num_steps"),
    ({"batch_size": 0}, "batch_size"), ({"log_every": 0}, "log_every"),
    ({"eval_every": 0}, "eval_every"), ({"checkpoint_every": 0}, "checkpoint_every"),
    ({"eval_batch_size": 0}, "eval_batch_size"), ({"seed": -1}, "seed"),
    ({"max_to_keep": 0}, "max_to_keep"), ({"model.features": (0,)}, "model.features"),
    ({"model.name": "cnn"}, "model does not fit model 'cnn'"),
    ({"dfa.feedback": "macro-out"}, "dfa.feedback"), ({"method": "dfa-"}, "method"),
    ({"dataset.train_limit": 10**6}, "dataset.train_limit"),
    ({"model.activation": "swish"}, "model.activation='swish' is not one of"),
    ({"dataset.source": "web"}, "dataset.source='web' is not one of"),
])
def test_bad_values_are_refused_before_writing(tmp_path, overrides, key):
  workdir = tmp_path / "run"
  with pytest.raises(ConfigError, match=f"config.{key}"):
    train_and_evaluate(_config(**overrides), str(workdir))
  assert not workdir.exists()


@pytest.mark.parametrize("config_file, key, value", [
    ("vit_mnist.py", "model.pre_logits", -1), ("vit_mnist.py", "model.scan_unroll", 0),
    ("shakespeare_lm.py", "model.scan_unroll", True), ("shakespeare_lm.py", "model.norm", "mid"),
    ("shakespeare_lm.py", "model.residual_init", "gpt2"),
    ("shakespeare_lm.py", "model.error_at", "head"), ("vit_mnist.py", "model.norm", "mid"),
    ("vit_mnist.py", "model.patch", 5), ("shakespeare_lm.py", "dataset.seq_len", 0),
    ("shakespeare_lm.py", "dataset.eval_windows", 0)])
def test_bad_transformer_fields_are_refused_before_writing(tmp_path, config_file, key, value):
  workdir = tmp_path / "run"
  config = load_config(REPO / "configs" / config_file, **{key: value})
  with pytest.raises(ConfigError, match=f"config.{key}=") as refusal:
    train_and_evaluate(config, str(workdir))
  assert "data set" not in str(refusal.value)
  assert not workdir.exists()


def test_the_suggested_value_is_a_valid_one(tmp_path):
  """A refusal's ``set e.g.`` names a value that passes (num_heads must divide d_model)."""
  config = load_config(REPO / "configs" / "shakespeare_lm.py", **{"model.d_model": 130})
  with pytest.raises(ConfigError, match=r"set e.g. --config.model.num_heads=2\.$"):
    train_and_evaluate(config, str(tmp_path / "run"))


def test_a_model_that_cannot_be_built_is_named_not_blamed_on_the_data(tmp_path, monkeypatch):
  from dfax.train import families  # noqa: PLC0415

  def refuses(config, num_classes):
    raise ValueError("width must be even, got 7.")
  family = dataclasses.replace(families.FAMILIES["mlp"], build=refuses)
  monkeypatch.setitem(families.FAMILIES, "mlp", family)
  workdir = tmp_path / "run"
  with pytest.raises(ConfigError) as refusal:
    train_and_evaluate(_config(), str(workdir))
  assert str(refusal.value) == ("dfax.train: config.model cannot build model 'mlp': width must "
                                "be even, got 7.")
  assert not workdir.exists()


def test_fields_outside_the_schema_are_refused(tmp_path):
  config = _config()
  with config.unlocked():
    config.learnig_rate = 3e-3
  with pytest.raises(ConfigError, match=r"unknown fields \['learnig_rate'\]"):
    train_and_evaluate(config, str(tmp_path / "run"))
  with pytest.raises(ConfigError, match="override 'learnig_rate' names no field"):
    _config(learnig_rate=3e-3)
  assert not (tmp_path / "run").exists()


def test_workdir_that_is_a_file_is_refused(tmp_path):
  (tmp_path / "file").write_text("")
  with pytest.raises(ConfigError, match="is a file, not a directory"):
    train_and_evaluate(_config(), str(tmp_path / "file"))


def test_cli_error_is_one_line_and_writes_nothing(tmp_path):
  done = subprocess.run([sys.executable, "-m", "dfax.train", "--config", "configs/nope.py",
                         "--workdir", str(tmp_path / "x")], cwd=REPO, env=ENV,
                        capture_output=True, text=True, timeout=120)
  assert done.returncode == 2, done.stderr[-2000:]
  assert "'configs/nope.py'" in done.stderr and "Traceback" not in done.stderr
  assert len(done.stderr.strip().splitlines()) == 1, done.stderr
  assert not (tmp_path / "x").exists()


# 8. Signals and disk.

def _wait_for(predicate, timeout=120):
  deadline = time.time() + timeout
  while time.time() < deadline and not predicate():
    time.sleep(0.01)
  assert predicate(), "timed out"


@pytest.mark.slow
def test_two_processes_and_sigterm(tmp_path):
  workdir = tmp_path / "run"
  proc = subprocess.Popen(_cli(workdir, *_cli_args(num_steps=10**6, checkpoint_every=10**6)),
                          cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
  try:
    metrics_file = workdir / "metrics.jsonl"
    _wait_for(lambda: metrics_file.exists() and metrics_file.stat().st_size > 0)
    with pytest.raises(WorkdirBusyError, match=f"in use by process {proc.pid} on host"):
      train_and_evaluate(_config(num_steps=10**6, checkpoint_every=10**6), str(workdir))
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
  finally:
    proc.kill()
  assert proc.returncode == 143, err[-2000:]
  assert "Traceback" not in err
  results = json.loads((workdir / "results.json").read_text())
  assert results["status"] == "interrupted" and 0 < results["steps"] < 10**6
  assert _params(workdir)[0] == results["steps"]
  rows = [(r["step"], tuple(sorted(r))) for r in metrics.read_metrics(str(metrics_file))]
  assert len(rows) == len(set(rows))  # one process wrote them: no duplicates


def _catches_sigterm(pid):
  """Whether the process has installed its SIGTERM handler (Linux: /proc/PID/status)."""
  try:
    status = pathlib.Path(f"/proc/{pid}/status").read_text()
  except OSError:
    return False
  caught = int(next(l for l in status.splitlines() if l.startswith("SigCgt:")).split()[1], 16)
  return bool(caught & (1 << (signal.SIGTERM - 1)))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigint_during_start_up_is_quiet_and_writes_nothing(tmp_path):
  proc = subprocess.Popen(_cli(tmp_path / "run", *_cli_args()), cwd=REPO, env=ENV,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  # dfax.train's __main__ handles the signals once `import dfax` (its parent package) is done.
  _wait_for(lambda: _catches_sigterm(proc.pid) or proc.poll() is not None)
  proc.send_signal(signal.SIGINT)
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == 130, err[-2000:]
  assert err.strip() == "dfax.train: interrupted during start-up; nothing was written."
  assert not (tmp_path / "run").exists()


def test_signal_on_the_last_step_is_a_completed_run(tmp_path, monkeypatch):
  def signalling(config):
    task = datasets.mnist(config)

    def batches(start):
      for step, batch in enumerate(task.train_batches(start), start=start):
        if step == config.num_steps - 1:
          os.kill(os.getpid(), signal.SIGTERM)  # caught by the trainer: only sets a flag
        yield batch

    return datasets.TaskData(batches, task.x_eval, task.y_eval, task.num_classes,
                             task.steps_per_epoch, task.input_shape)

  monkeypatch.setitem(datasets.DATASETS, "signalling", _like_mnist("signalling", signalling))
  results = train_and_evaluate(_config(**{"dataset.name": "signalling"}), str(tmp_path))
  assert results["status"] == "completed" and "signal" not in results


def _small_tmpfs(path, size):
  path.mkdir()
  try:
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, timeout=30)
  except (OSError, subprocess.TimeoutExpired):  # no mount command
    return False
  return done.returncode == 0


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # orbax, failed IO
def test_full_disk_is_one_line_and_keeps_earlier_checkpoints(tmp_path, reference, monkeypatch,
                                                             orbax_failures_finalised):
  """On a small tmpfs where the machine allows it (root), else an injected ENOSPC."""
  disk = tmp_path / "disk"
  one = sum(f.stat().st_size for f in (reference / "checkpoints" / "4").rglob("*") if f.is_file())
  mounted = _small_tmpfs(disk, 2 * one + 64 * 1024)
  if not mounted:
    real_save = checkpoint.ocp.CheckpointManager.save

    def full_after_two(self, step, *args, **kwargs):
      if len(self.all_steps()) >= 2:
        raise OSError(errno.ENOSPC, "No space left on device")
      return real_save(self, step, *args, **kwargs)

    monkeypatch.setattr(checkpoint.ocp.CheckpointManager, "save", full_after_two)
  try:
    with pytest.raises(WriteFailedError) as info:
      train_and_evaluate(_config(), str(disk / "run"))
    message = str(info.value)
    assert "\n" not in message and "the disk is full" in message
    assert f"to {disk / 'run' / 'checkpoints'}" in message and "are intact" in message
    good, params = _params(disk / "run")  # the newest committed checkpoint restores
    assert str(good) in message.split("earlier checkpoints")[1]
    assert all(np.isfinite(np.asarray(a)).all() for a in jax.tree.leaves(params))
  finally:
    if mounted:
      subprocess.run(["umount", str(disk)], check=False)


@pytest.mark.slow
def test_kill_9_during_a_save_resumes_exactly(tmp_path, reference, caplog):
  workdir = tmp_path / "run"
  proc = subprocess.Popen(_cli(workdir, *_cli_args(checkpoint_every=1, log_every=1)),
                          cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  root = workdir / "checkpoints"
  try:
    def saving():  # a save under way after three commits (or, failing that, eight commits)
      names = os.listdir(root) if root.exists() else []
      return (any("tmp" in n for n in names) and len(names) > 3) or len(names) >= 8

    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not saving():
      time.sleep(0.001)
    proc.kill()  # SIGKILL, mid-save if the poll caught one
    proc.communicate(timeout=60)
  finally:
    proc.kill()
  assert proc.returncode == -signal.SIGKILL
  owner = json.loads((workdir / "lock").read_text())
  assert owner["pid"] == proc.pid  # left behind by the dead process
  with caplog.at_level(logging.WARNING):
    results = train_and_evaluate(_config(checkpoint_every=1, log_every=1), str(workdir))
  assert f"took over a stale lock of process {proc.pid}" in caplog.text
  assert results["status"] == "completed" and 0 < results["resumed_from"] < 12
  _same(_params(workdir)[1], _params(reference)[1])
