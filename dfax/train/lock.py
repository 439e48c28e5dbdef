"""One run per workdir: an exclusive lock that records its owner.

``workdir/lock`` is held with ``fcntl.flock`` for the life of the run and
holds the owner's host, pid and start time (with the process's start time
from ``/proc/<pid>/stat``, so a pid that a later process reuses is not taken
for the owner). The kernel releases the lock when
the owner dies, however it dies (kill -9 included), so a lock file whose
owner is gone is recognised as stale and taken over with a note. The file is
emptied, never deleted, on release (deleting a flock'ed file races with a
process that has just opened it).

Examples:
  >>> import tempfile
  >>> workdir = tempfile.mkdtemp()
  >>> with WorkdirLock(workdir) as lock:    # a second process would get WorkdirBusyError
  ...   read_owner(workdir)["pid"] == os.getpid()
  True
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import socket

from dfax.train.errors import ConfigError, WorkdirBusyError

LOCK = "lock"


def _pid_alive(pid: int) -> bool:
  if pid <= 0:
    return False
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # alive, another user's
    return True
  return True


def process_start(pid: int) -> int | None:
  """When process ``pid`` started, in clock ticks since boot (/proc/<pid>/stat), or None.

  With the pid, this names a process uniquely: a pid reused by a later process
  has another start time.
  """
  try:
    with open(f"/proc/{pid}/stat", "rb") as f:
      stat = f.read().decode(errors="replace")
    return int(stat[stat.rindex(")") + 2:].split()[19])  # field 22, after the command
  except (OSError, ValueError, IndexError):
    return None


def _pid(owner: dict) -> int:
  try:
    return int(owner.get("pid", -1))
  except (TypeError, ValueError):
    return -1


def _same_process(owner: dict) -> bool:
  """Whether the process recorded in ``owner`` (on this host) still runs: pid and start time."""
  pid = _pid(owner)
  if pid <= 0 or not _pid_alive(pid):
    return False
  recorded, now = owner.get("pid_start"), process_start(pid)
  return recorded is None or now is None or recorded == now


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
    if os.path.isdir(self.path):
      raise ConfigError(f"dfax.train: {self.path} is a folder, but it is the name of dfax's "
                        "lock file; move that folder elsewhere (or use another --workdir).")
    try:
      fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
      raise ConfigError(f"dfax.train: cannot open the lock file {self.path} "
                        f"({e.strerror or e}); the workdir must be a writable directory.") \
          from None
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
      if here and _same_process(previous) and previous.get("pid") != os.getpid():
        # flock is free but the recorded owner lives: a filesystem without flock (some NFS)
        os.close(fd)
        raise WorkdirBusyError(
            f"dfax.train: {os.path.dirname(self.path)} is recorded as in use by process "
            f"{previous['pid']} on this host, which is running. Stop it or use another "
            "--workdir.")
      reused = here and _pid_alive(_pid(previous))
      self.note = (f"took over a stale lock of process {previous.get('pid')} on host "
                   f"{previous.get('host')} (started {previous.get('started')}), which is no "
                   "longer running" + (" (its pid now belongs to another process)."
                                       if reused else "."))
    owner = {"host": socket.gethostname(), "pid": os.getpid(),
             "pid_start": process_start(os.getpid()),
             "started": datetime.datetime.now(datetime.timezone.utc).isoformat(
                 timespec="seconds")}
    try:
      os.ftruncate(fd, 0)
      os.pwrite(fd, (json.dumps(owner) + "\n").encode(), 0)
      os.fsync(fd)
    except OSError as e:
      os.close(fd)
      raise ConfigError(f"dfax.train: cannot write the lock file {self.path} "
                        f"({e.strerror or e}); free space on its disk or use another "
                        "--workdir.") from None
    self._fd = fd
    return self

  def __exit__(self, *exc) -> None:
    if self._fd is not None:
      try:
        os.ftruncate(self._fd, 0)
      finally:
        os.close(self._fd)  # releases the flock
        self._fd = None
