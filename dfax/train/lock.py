"""One run per workdir: an exclusive lock that records its owner.

``workdir/lock`` is held with ``fcntl.flock`` for the life of the run and
holds the owner's host, pid and start time. The kernel releases the lock when
the owner dies, however it dies (kill -9 included), so a lock file whose
owner is gone is recognised as stale and taken over with a note. The file is
emptied, never deleted, on release (deleting a flock'ed file races with a
process that has just opened it).

Example::

  with WorkdirLock("/tmp/run") as lock:
    ...  # train; lock.note says whether a stale lock was taken over
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import socket

from dfax.train.errors import WorkdirBusyError

LOCK = "lock"


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # alive, another user's
    return True
  return True


def read_owner(workdir: str) -> dict:
  """The owner recorded in ``workdir/lock`` ({} when free or unreadable)."""
  try:
    with open(os.path.join(workdir, LOCK)) as f:
      text = f.read().strip()
    return json.loads(text) if text else {}
  except (OSError, ValueError):
    return {}


class WorkdirLock:
  """Exclusive ownership of a workdir for one process.

  Args:
    workdir: an existing directory.

  Raises (on enter):
    WorkdirBusyError: another live process holds the workdir; the message
      names its host and pid.
  """

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, LOCK)
    self.note = ""
    self._fd = None

  def __enter__(self) -> "WorkdirLock":
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
      os.close(fd)
      owner = read_owner(os.path.dirname(self.path))
      who = (f"process {owner.get('pid')} on host {owner.get('host')} (since "
             f"{owner.get('started')})" if owner else "another process")
      raise WorkdirBusyError(
          f"dfax.train: {os.path.dirname(self.path)} is in use by {who}. One run per workdir: "
          "wait for it to finish or stop it (it saves a checkpoint on SIGTERM), or use "
          "another --workdir.") from None
    previous = read_owner(os.path.dirname(self.path))
    if previous:
      here = previous.get("host") == socket.gethostname()
      if here and _pid_alive(int(previous.get("pid", -1))) and previous.get("pid") != os.getpid():
        # flock is free but the recorded owner lives: a filesystem without flock (some NFS)
        os.close(fd)
        raise WorkdirBusyError(
            f"dfax.train: {os.path.dirname(self.path)} is recorded as in use by process "
            f"{previous['pid']} on this host, which is running. Stop it or use another "
            "--workdir.")
      self.note = (f"took over a stale lock of process {previous.get('pid')} on host "
                   f"{previous.get('host')} (started {previous.get('started')}), which is no "
                   "longer running.")
    owner = {"host": socket.gethostname(), "pid": os.getpid(),
             "started": datetime.datetime.now(datetime.timezone.utc).isoformat(
                 timespec="seconds")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(owner) + "\n").encode(), 0)
    os.fsync(fd)
    self._fd = fd
    return self

  def __exit__(self, *exc) -> None:
    if self._fd is not None:
      try:
        os.ftruncate(self._fd, 0)
      finally:
        os.close(self._fd)  # releases the flock
        self._fd = None
