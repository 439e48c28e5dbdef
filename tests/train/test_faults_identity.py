"""Runs that never lose or mix work, round two (issue 31).

Data identity, vanished checkpoints, refused starts that write nothing,
signals at start-up and after completion, plots as part of completion, advice
that works (gradient clipping added on resume, a recycled pid), and one line
with exit status 2 for each bad input. docs/reliability.md lists the
guarantee each test proves.
"""

import errno
import functools
import gzip
import json
import logging
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dfax.data.mnist import EMBEDDED_DIR, MNIST_FILES
from dfax.train import checkpoint, lock, optim, plots
from dfax.train.config_file import load_config
from dfax.train.errors import (ConfigChangedError, ConfigError, NonFiniteLossError, ResumeError,
                               WorkdirBusyError, WriteFailedError)
from dfax.train.trainer import train_and_evaluate

REPO = pathlib.Path(__file__).resolve().parents[2]
SMOKE = REPO / "configs" / "smoke.py"
SMALL = {"num_steps": 8, "checkpoint_every": 4, "eval_every": 4, "log_every": 2,
         "alignment_every": 0, "max_to_keep": 10, "dataset.train_limit": 256,
         "dataset.eval_limit": 100, "eval_batch_size": 100, "batch_size": 32,
         "model.features": (16,), "method": "bp", "mesh.data": 1}
# One device, compiled as this process compiles (its XLA_FLAGS less the device count): runs
# here and in the subprocess are compared bit for bit.
ENV = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": " ".join(
    flag for flag in os.environ.get("XLA_FLAGS", "").split() if "device_count" not in flag)}


def _config(**overrides):
  return load_config(SMOKE, **{**SMALL, **overrides})


def _files(workdir):
  """Every file (and symlink) under workdir with its content, except the emptied lock."""
  out = {}
  for root, dirs, names in os.walk(workdir):
    for n in names + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
      p = os.path.join(root, n)
      if n != "lock":
        out[os.path.relpath(p, workdir)] = (os.readlink(p) if os.path.islink(p)
                                            else open(p, "rb").read())
  return out


def _mnist_copy(folder, change_label=False):
  """A copy of the shipped MNIST files in ``folder``; optionally one train label changed."""
  folder.mkdir(parents=True)
  for name in MNIST_FILES.values():
    shutil.copy(EMBEDDED_DIR / name, folder / name)
  if change_label:
    path = folder / MNIST_FILES["y_train"]
    data = bytearray(gzip.decompress(path.read_bytes()))
    data[8] = (data[8] + 1) % 10  # the first label
    path.write_bytes(gzip.compress(bytes(data), mtime=0))
  return folder


@pytest.fixture(scope="module")
def completed(tmp_path_factory):
  """A completed 8-step run (checkpoints at 4 and 8): its workdir, to be copied."""
  workdir = tmp_path_factory.mktemp("completed") / "run"
  train_and_evaluate(_config(), str(workdir))
  return workdir


def _copy(completed, tmp_path, name="run"):
  workdir = tmp_path / name
  shutil.copytree(completed, workdir, symlinks=True)
  return workdir


# 1. The data is part of a run's identity.

@pytest.mark.slow
def test_data_swap_is_refused_naming_both_then_allowed_and_recorded(tmp_path):
  a = _mnist_copy(tmp_path / "a")
  b = _mnist_copy(tmp_path / "b", change_label=True)
  workdir = tmp_path / "run"
  train_and_evaluate(_config(data_dir=str(a)), str(workdir))
  recorded = json.loads((workdir / "data.json").read_text())
  assert recorded["path"] == str(a) and recorded["fingerprint"].startswith("sha256:")
  (workdir / "results.json").unlink()  # as if interrupted after the last save
  before = _files(workdir)
  with pytest.raises(ConfigChangedError, match=f"trained on mnist from {a} .* reads mnist from "
                     f"{b} .*--allow_changes=data"):
    train_and_evaluate(_config(data_dir=str(b), num_steps=12), str(workdir),
                       allow_changes=["num_steps"])
  assert _files(workdir) == before  # refused: nothing written
  results = train_and_evaluate(_config(data_dir=str(b), num_steps=12), str(workdir),
                               allow_changes=["num_steps", "data"])
  assert results["status"] == "completed" and results["resumed_from"] == 8
  change = results["config_changes"][-1]["changes"]["data"]
  assert change["kind"] == "allowed" and change["from"]["path"] == str(a)
  assert change["to"]["path"] == str(b)
  assert json.loads((workdir / "data.json").read_text())["path"] == str(b)
  # The same content in another folder is the same data: a free, recorded change of path.
  c = _mnist_copy(tmp_path / "c", change_label=True)
  train_and_evaluate(_config(data_dir=str(c), num_steps=12), str(workdir))
  last = json.loads((workdir / "changes.jsonl").read_text().splitlines()[-1])["changes"]
  assert last["data_path"] == {"from": str(b), "to": str(c), "kind": "free"}


@pytest.mark.parametrize("setting", ["missing", "file", "no_mnist"])
def test_unusable_dfax_data_dir_is_an_error_not_a_fallback(tmp_path, monkeypatch, setting):
  target = tmp_path / "data"
  if setting == "file":
    target.write_text("")
  elif setting == "no_mnist":
    target.mkdir()
  monkeypatch.setenv("DFAX_DATA_DIR", str(target))
  with pytest.raises(ConfigError, match=f"DFAX_DATA_DIR={target}"):
    train_and_evaluate(_config(), str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


# 2. History is never silently redone or lost; a refused start writes nothing.

@pytest.mark.parametrize("vanish", ["removed", "dangling_symlink", "unmounted"])
def test_vanished_checkpoints_are_refused_and_restart_keeps_the_old_files(
    completed, tmp_path, vanish):
  workdir = _copy(completed, tmp_path)
  (workdir / "results.json").unlink()
  shutil.rmtree(workdir / "checkpoints")
  if vanish == "dangling_symlink":
    (workdir / "checkpoints").symlink_to(tmp_path / "scratch" / "checkpoints")
  elif vanish == "unmounted":
    (workdir / "checkpoints").mkdir()  # an empty mount point
  rows = (workdir / "metrics.jsonl").read_text()
  before = _files(workdir)
  with pytest.raises(ResumeError, match=r"metrics.jsonl with \d+ rows up to step 8.*"
                     r"--restart.*restarted-"):
    train_and_evaluate(_config(), str(workdir))
  assert _files(workdir) == before
  if vanish != "removed":
    return
  results = train_and_evaluate(_config(), str(workdir), restart=True)
  assert results["status"] == "completed" and results["resumed_from"] == 0
  (aside,) = workdir.glob("restarted-*")
  assert (aside / "metrics.jsonl").read_text() == rows  # the old history, kept whole
  assert (aside / "config.json").exists() and (workdir / "checkpoints" / "8").is_dir()


def test_refused_start_writes_nothing_damaged_metrics_with_a_change(completed, tmp_path):
  workdir = _copy(completed, tmp_path)
  (workdir / "results.json").unlink()
  lines = (workdir / "metrics.jsonl").read_text().splitlines()
  lines[1] = lines[1][:10]
  (workdir / "metrics.jsonl").write_text("\n".join(lines) + "\n")
  before = _files(workdir)
  with pytest.raises(ResumeError, match="metrics.jsonl line 2 is not JSON"):
    train_and_evaluate(_config(num_steps=12), str(workdir), allow_changes=["num_steps"])
  assert _files(workdir) == before  # neither config.json nor changes.jsonl was touched


# 3. Signals at any moment.

def _cli(workdir, *extra):
  return [sys.executable, "-m", "dfax.train", "--config", str(SMOKE), "--workdir",
          str(workdir), *[f"--config.{k}={v}" for k, v in SMALL.items()], *extra]


@pytest.mark.parametrize("delay", [0.3, 0.8, 1.5])
def test_sigint_at_start_up_exits_130_and_writes_nothing(tmp_path, delay):
  proc = subprocess.Popen(_cli(tmp_path / "run"), cwd=REPO, env=ENV, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  time.sleep(delay)  # inside `import dfax` (JAX's imports) or the flag parsing
  proc.send_signal(signal.SIGINT)
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == 130, err[-2000:]
  assert "Traceback" not in err
  assert err.strip().splitlines()[-1] == ("dfax.train: interrupted during start-up; nothing "
                                         "was written.")
  assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_signal_after_completion_exits_0_and_says_so(tmp_path):
  proc = subprocess.Popen(_cli(tmp_path / "run"), cwd=REPO, env={**ENV, "PYTHONUNBUFFERED": "1"},
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  line = proc.stdout.readline()  # "completed: ..." is printed before the process exits
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=120)
  assert line.startswith("completed:"), err[-2000:]
  assert proc.returncode == 0, err[-2000:]
  assert "nothing was written" not in err and "Traceback" not in err
  assert json.loads((tmp_path / "run" / "results.json").read_text())["status"] == "completed"


# 4. A completed run is complete: plots come before results.json, and a rerun repairs them.

def test_plots_are_part_of_completion_and_a_rerun_repairs_them(completed, tmp_path, monkeypatch):
  workdir = tmp_path / "run"

  def full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")

  monkeypatch.setattr(plots, "plot_curves", full_disk)
  with pytest.raises(WriteFailedError, match="could not write the plots of step 8.*the disk is "
                     "full.*rerun the same command"):
    train_and_evaluate(_config(), str(workdir))
  assert not (workdir / "results.json").exists()  # not "completed" without its plots
  monkeypatch.undo()
  results = train_and_evaluate(_config(), str(workdir))
  assert results["status"] == "completed" and (workdir / "curves.png").stat().st_size > 0
  # A completed run (of an older dfax, or a plot removed since) gets its plot back.
  other = _copy(completed, tmp_path, "other")
  (other / "curves.png").unlink()
  again = train_and_evaluate(_config(), str(other))
  assert again["already_completed"] and (other / "curves.png").stat().st_size > 0


# 5. Advice that works.

def test_clip_can_be_added_on_resume_as_the_divergence_message_advises(tmp_path):
  params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
  states = [optim.make_optimizer(_config(grad_clip=c), 10).init(params) for c in (0.0, 1.0)]
  assert jax.tree.structure(states[0]) == jax.tree.structure(states[1])
  diverging = dict(learning_rate=1e38, optimizer="sgd", momentum=0.0)
  with pytest.raises(NonFiniteLossError,
                     match="--config.grad_clip=1.0 --allow_changes=grad_clip"):
    train_and_evaluate(_config(**diverging), str(tmp_path))
  results = train_and_evaluate(_config(**{**diverging, "learning_rate": 1e-3}, grad_clip=1.0),
                               str(tmp_path), allow_changes=["grad_clip", "learning_rate"])
  assert results["status"] == "completed"
  assert set(results["config_changes"][0]["changes"]) == {"grad_clip", "learning_rate"}


def _params(workdir, step):
  return checkpoint.restore_params(str(workdir), step)[1]


def test_a_checkpoint_of_the_older_clip_layout_still_resumes_exactly(tmp_path, monkeypatch):
  chained = functools.partial(optim.make_optimizer, chain_clip=True)
  monkeypatch.setattr(optim, "make_optimizer",  # dfax before clip_then: optax.chain(clip, opt)
                      lambda config, total_steps, **kw: chained(config, total_steps))
  old = tmp_path / "old"
  train_and_evaluate(_config(grad_clip=1.0), str(old))
  monkeypatch.undo()
  workdir = _copy(old, tmp_path, "resumed")
  (workdir / "results.json").unlink()
  shutil.rmtree(workdir / "checkpoints" / "8")
  results = train_and_evaluate(_config(grad_clip=1.0), str(workdir))
  assert results["resumed_from"] == 4 and results["status"] == "completed"
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
               _params(workdir, 8), _params(old, 8))


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="reads /proc")
def test_a_lock_of_a_recycled_pid_is_stale(tmp_path):
  other = subprocess.Popen(["sleep", "60"])
  try:
    start = lock.process_start(other.pid)
    owner = {"host": socket.gethostname(), "pid": other.pid, "started": "earlier"}
    (tmp_path / "lock").write_text(json.dumps({**owner, "pid_start": start + 1}))
    with lock.WorkdirLock(str(tmp_path)) as held:  # that pid now names another process
      assert "stale lock of process" in held.note and "another process" in held.note
    # A recorded owner that is that very process (a filesystem without flock) refuses.
    (tmp_path / "lock").write_text(json.dumps({**owner, "pid_start": start}))
    with pytest.raises(WorkdirBusyError, match=f"process {other.pid} on this host"):
      with lock.WorkdirLock(str(tmp_path)):
        pass
  finally:
    other.kill()
    other.wait()


# 6. One line and exit status 2 for every bad input, before anything is written.

def _idx_damages():
  def truncated_gzip(d):
    p = d / MNIST_FILES["x_test"]
    p.write_bytes(p.read_bytes()[:5000])

  def bad_magic(d):
    p = d / MNIST_FILES["y_test"]
    p.write_bytes(gzip.compress(b"\x12\x34" + gzip.decompress(p.read_bytes())[2:]))

  def short_idx(d):
    p = d / MNIST_FILES["y_train"]
    p.write_bytes(gzip.compress(gzip.decompress(p.read_bytes())[:-7]))

  def swapped(d):
    x, y = d / MNIST_FILES["x_test"], d / MNIST_FILES["y_test"]
    data = x.read_bytes()
    x.write_bytes(y.read_bytes())
    y.write_bytes(data)

  def labels_out_of_range(d):
    p = d / MNIST_FILES["y_train"]
    data = bytearray(gzip.decompress(p.read_bytes()))
    data[8] = 12
    p.write_bytes(gzip.compress(bytes(data)))

  return [truncated_gzip, bad_magic, short_idx, swapped, labels_out_of_range]


@pytest.mark.parametrize("damage", _idx_damages(), ids=lambda f: f.__name__)
def test_damaged_data_files_are_one_line(tmp_path, damage):
  folder = _mnist_copy(tmp_path / "mnist")
  damage(folder)
  with pytest.raises(ConfigError, match=f"cannot load the data set 'mnist': .*{folder}") as info:
    train_and_evaluate(_config(data_dir=str(folder)), str(tmp_path / "run"))
  assert "\n" not in str(info.value)
  assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("content", ["", "{garbled", "[1, 2]"])
def test_garbled_checksums_fall_back_to_restoring(completed, tmp_path, content, caplog):
  workdir = _copy(completed, tmp_path)
  (workdir / "results.json").unlink()
  (workdir / "checksums" / "8.json").write_text(content)
  with caplog.at_level(logging.WARNING):
    results = train_and_evaluate(_config(), str(workdir))
  assert results["resumed_from"] == 8  # the checkpoint itself is fine
  assert "checksums/8.json is unreadable" in caplog.text


def test_workdir_errors_are_refusals(tmp_path):
  (tmp_path / "file").write_text("")
  with pytest.raises(ConfigError, match="cannot be created: .*file is a file"):
    train_and_evaluate(_config(), str(tmp_path / "file" / "run"))
  with pytest.raises(ConfigError, match="--workdir is empty"):
    train_and_evaluate(_config(), "")
  with pytest.raises(ConfigError, match=r"config.seed=9223372036854775808 must be at most"):
    train_and_evaluate(_config(seed=2**63), str(tmp_path / "run"))
  (tmp_path / "run" / "lock").mkdir(parents=True)
  with pytest.raises(ConfigError, match="lock is a folder"):
    train_and_evaluate(_config(), str(tmp_path / "run"))
  assert os.listdir(tmp_path / "run") == ["lock"]


def _mount_tmpfs(path, options):
  path.mkdir()
  try:
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                          capture_output=True, timeout=30)
  except (OSError, subprocess.TimeoutExpired):
    return False
  return done.returncode == 0


@pytest.mark.parametrize("options, message", [("size=64k", "is full"),
                                              ("ro,size=1m", "read-only")])
@pytest.mark.slow
def test_full_or_read_only_disk_is_one_line_exit_2(tmp_path, options, message):
  disk = tmp_path / "disk"
  if not _mount_tmpfs(disk, options):
    pytest.skip("cannot mount a tmpfs here (needs root)")
  try:
    if "ro" not in options:
      (disk / "filler").write_bytes(b"\0" * 60_000)
    done = subprocess.run(_cli(disk / "run"), cwd=REPO, env=ENV, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr[-3000:]
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not (disk / "run").exists()
  finally:
    subprocess.run(["umount", str(disk)], check=False)


def _config_file(tmp_path, body):
  path = tmp_path / "cfg.py"
  path.write_text(body)
  return path


@pytest.mark.parametrize("case, message", [
    ("syntax", "has a syntax error (line 2)"),
    ("import", "fails to import (line 1): ModuleNotFoundError"),
    ("no_get_config", "defines no get_config()"),
    ("returns_none", "returned NoneType, not an ml_collections.ConfigDict"),
    ("overrides_without_config", "--config.seed override(s) need --config=<file>"),
    ("empty_workdir", "--workdir is empty"),
])
def test_cli_bad_inputs_are_one_line_exit_2(tmp_path, case, message):
  bodies = {"syntax": "def get_config():\n  return (\n", "import": "import no_such_module\n",
            "no_get_config": "X = 1\n", "returns_none": "def get_config():\n  return None\n"}
  workdir = tmp_path / "run"
  if case in bodies:
    args = ["--config", str(_config_file(tmp_path, bodies[case])), "--workdir", str(workdir)]
  elif case == "overrides_without_config":
    args = ["--workdir", str(workdir), "--config.seed=1"]
  else:
    args = ["--config", str(SMOKE), "--workdir="]
  done = subprocess.run([sys.executable, "-m", "dfax.train", *args], cwd=tmp_path, env=ENV,
                        capture_output=True, text=True, timeout=120)
  assert done.returncode == 2, done.stderr[-2000:]
  assert len(done.stderr.strip().splitlines()) == 1, done.stderr[-2000:]
  assert message in done.stderr, done.stderr
  assert os.listdir(tmp_path) in (["cfg.py"], [])  # nothing written, here or in the workdir
