"""The CLI as a multi-host run: 2 processes x 4 CPU devices equal 1 process x 8 devices.

Process 0 owns the workdir; process 1 is given a workdir of its own that must
stay untouched, which shows it writes nothing.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from dfax.train import checkpoint

REPO = pathlib.Path(__file__).resolve().parents[2]
SMOKE = REPO / "configs" / "smoke.py"
SMALL = ["--config.eval_every=4", "--config.log_every=2", "--config.alignment_every=4",
         "--config.checkpoint_every=4", "--config.dataset.train_limit=256",
         "--config.dataset.eval_limit=100", "--config.eval_batch_size=100",
         "--config.batch_size=32", "--config.progress_bar=False"]


def _env(devices):
  return {**os.environ, "JAX_PLATFORMS": "cpu",
          "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _cli(workdir, steps, *extra):
  return [sys.executable, "-m", "dfax.train", "--config", str(SMOKE), "--workdir",
          str(workdir), f"--config.num_steps={steps}", *SMALL, *extra]


def _two_processes(tmp_path, steps, *extra, check=True):
  coordinator = f"127.0.0.1:{_free_port()}"
  procs = [subprocess.Popen(
      _cli(tmp_path / ("multi" if i == 0 else "never_written"), steps, "--multihost",
           f"--coordinator_address={coordinator}", "--num_processes=2", f"--process_id={i}",
           *extra),
      cwd=REPO, env=_env(4), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
      for i in range(2)]
  outs, errs = [], []
  for p in procs:
    try:
      out, err = p.communicate(timeout=300)
    except subprocess.TimeoutExpired:
      for q in procs:
        q.kill()
      pytest.fail("the two-process run did not finish in 300 s")
    errs.append(err)
    if not check:
      continue
    assert p.returncode == 0, err[-3000:]
    outs.append(out)
  assert not (tmp_path / "never_written").exists()
  return outs if check else ([p.returncode for p in procs], errs)


def _without_gloo(out: str) -> str:
  """``out`` less gloo's connection log, for checking that a process says nothing else.

  gloo writes its log in pieces that may land mid-line in dfax's own output, so the
  tests look for dfax's messages in the raw output and use this only to check silence.
  """
  return "".join(line for line in out.splitlines(keepends=True)
                 if "[Gloo]" not in line and "peer ranks" not in line)


def _one_process(workdir, steps, *extra):
  done = subprocess.run(_cli(workdir, steps, *extra), cwd=REPO, env=_env(8), capture_output=True,
                        text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]


def _results(workdir):
  return json.loads((workdir / "results.json").read_text())


def _assert_same_run(a, b):
  ra, rb = _results(a), _results(b)
  assert ra["devices"] == rb["devices"] == 8
  assert (ra["steps"], ra["resumed_from"]) == (rb["steps"], rb["resumed_from"])
  assert ra["test_loss"] == pytest.approx(rb["test_loss"], rel=1e-5)
  jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6),
               checkpoint.restore_params(str(a))[1], checkpoint.restore_params(str(b))[1])


@pytest.mark.slow
def test_two_processes_train_resume_and_complete_like_one(tmp_path):
  outs = _two_processes(tmp_path, 8)
  assert "completed: dfa smoke" in outs[0] and _without_gloo(outs[1]) == ""  # process 0 speaks
  _one_process(tmp_path / "single", 8)
  _assert_same_run(tmp_path / "multi", tmp_path / "single")
  for name in ("metrics.jsonl", "curves.png", "alignment.png", "config.json"):
    assert (tmp_path / "multi" / name).stat().st_size > 0, name

  # A longer run resumes from process 0's checkpoint on both processes.
  _two_processes(tmp_path, 12, "--allow_changes=num_steps")
  _one_process(tmp_path / "single", 12, "--allow_changes=num_steps")
  assert _results(tmp_path / "multi")["resumed_from"] == 8
  _assert_same_run(tmp_path / "multi", tmp_path / "single")

  # The same command again: complete, on every process.
  outs = _two_processes(tmp_path, 12, "--allow_changes=num_steps")
  assert "already completed" in outs[0]

  # A start that process 0 refuses (a changed config) stops process 1 too, exit 2.
  codes, errs = _two_processes(tmp_path, 16, check=False)
  assert codes == [2, 2]
  assert "different config" in errs[0]
  assert errs[1].strip().splitlines()[-1] == (
      "dfax.train: process 0 refused or stopped this start; its message says why.")


def test_multihost_flags_are_checked_before_anything_runs(tmp_path):
  done = subprocess.run(_cli(tmp_path / "w", 8, "--process_id=1"), cwd=REPO, env=_env(1),
                        capture_output=True, text=True, timeout=120)
  assert done.returncode == 2
  assert done.stderr.strip().splitlines()[-1] == (
      "dfax.train: --coordinator_address, --num_processes and --process_id need --multihost.")
  assert not (tmp_path / "w").exists()
