"""Two jax.distributed processes on localhost (CPU) agree with one process."""

import json
import os
import pathlib
import socket
import subprocess
import sys

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "multihost_dfa.py"


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_match_a_single_process():
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
         "JAX_PLATFORMS": "cpu"}
  coordinator = f"127.0.0.1:{_free_port()}"
  procs = [subprocess.Popen([sys.executable, str(SCRIPT), "--coordinator", coordinator,
                             "--num-processes", "2", "--process-id", str(i)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for i in range(2)]
  outs = []
  for p in procs:
    try:
      out, err = p.communicate(timeout=240)
    except subprocess.TimeoutExpired:
      for q in procs:
        q.kill()
      pytest.fail("the two-process run did not finish in 240 s")
    assert p.returncode == 0, err[-3000:]
    outs.append(json.loads(out.strip().splitlines()[-1]))
  single = subprocess.run([sys.executable, "-c",
                           "import json, sys; sys.path.insert(0, %r); import multihost_dfa as m;"
                           "print(json.dumps(m.run(3)))" % str(SCRIPT.parent)],
                          env={**env, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"},
                          capture_output=True, text=True, timeout=240, check=True)
  ref = json.loads(single.stdout.strip().splitlines()[-1])
  assert [o["devices"] for o in outs] == [4, 4] and ref["devices"] == 1
  for o in outs:
    assert o["loss"] == pytest.approx(ref["loss"], rel=1e-5)
    assert o["checksum"] == pytest.approx(ref["checksum"], rel=1e-5, abs=1e-5)
