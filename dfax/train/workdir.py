"""The workdir before a start writes to it: usable, with room, and its history intact.

Every check here runs before the first write of a start, so a refused start
leaves the workdir as it was (see docs/reliability.md):

* :func:`check_usable`: the path is not empty, not a file, can be created
  and written, and its disk has room for a checkpoint;
* :func:`lost_history`: a workdir whose metrics or results show that
  checkpoints were saved, but whose ``checkpoints/`` folder is gone (an
  unmounted volume, a dangling symlink), is not silently started over;
* :func:`restart`: ``--restart`` moves the old files aside, into
  ``restarted-<time>/`` inside the workdir, and the run starts fresh.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil

from dfax.train.errors import ConfigError, ResumeError

RESTARTED = "restarted-"
_KEEP = ("lock",)


def _nearest_existing(path: str) -> str:
  while not os.path.lexists(path):
    parent = os.path.dirname(path)
    if parent == path:
      break
    path = parent
  return path


def check_path(workdir) -> str:
  """The absolute workdir; refuses an empty, file or unwritable path (writes nothing).

  Raises:
    ConfigError: naming the path and the fix.
  """
  if workdir is None or not str(workdir).strip():
    raise ConfigError("dfax.train: --workdir is empty (an unset shell variable?); name the "
                      "run's directory, e.g. --workdir=/tmp/run.")
  workdir = os.path.abspath(os.path.expanduser(str(workdir)))
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise ConfigError(f"dfax.train: --workdir {workdir} is a file, not a directory; name a "
                      "new or existing directory.")
  if os.path.islink(workdir) and not os.path.exists(workdir):
    raise ConfigError(f"dfax.train: --workdir {workdir} is a symlink to "
                      f"{os.readlink(workdir)}, which does not exist; mount or create it, or "
                      "name another directory.")
  base = _nearest_existing(workdir)
  if not os.path.isdir(base):
    raise ConfigError(f"dfax.train: --workdir {workdir} cannot be created: {base} is a file; "
                      "name a directory elsewhere.")
  if not os.access(base, os.W_OK | os.X_OK):
    what = "is read-only" if base == workdir else f"cannot be created: {base} is read-only"
    raise ConfigError(f"dfax.train: --workdir {workdir} {what} (for this user, or a read-only "
                      "filesystem); name a writable directory.")
  return workdir


def check_space(workdir: str, need_bytes: int) -> None:
  """Refuses a workdir whose disk cannot hold one checkpoint of ``need_bytes``."""
  try:
    free = shutil.disk_usage(_nearest_existing(workdir)).free
  except OSError:
    return
  if free < need_bytes:
    raise ConfigError(f"dfax.train: the disk holding {workdir} is full ({free / 2**20:.1f} MiB "
                      f"free; a checkpoint of this run takes about {need_bytes / 2**20:.1f} "
                      "MiB); free space or use a --workdir on another disk.")


def make(workdir: str) -> None:
  """Creates the workdir (a failure is one line, exit status 2)."""
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise ConfigError(f"dfax.train: --workdir {workdir} cannot be created ({e.strerror or e}); "
                      "name a writable directory.") from None


def _metrics_steps(path: str) -> list[int]:
  steps = []
  try:
    with open(path, "rb") as f:
      for line in f:
        try:
          steps.append(int(json.loads(line).get("step", 0)))
        except (ValueError, AttributeError, TypeError):
          pass
  except OSError:
    pass
  return steps


def lost_history(workdir: str, checkpoint_every: int) -> None:
  """Refuses a workdir whose history says checkpoints were saved that are now gone.

  The evidence: ``results.json``, ``checksums/<step>.json`` files, or metrics
  rows at or past the first checkpoint step. A ``checkpoints/`` folder that is
  missing, a dangling symlink, not a folder, unreadable, or empty then means
  the checkpoints vanished (an unmounted volume), not that the run never
  saved one.

  Raises:
    ResumeError: naming what is there, what is missing and how to start over.
  """
  root = os.path.join(workdir, "checkpoints")
  evidence = []
  if os.path.exists(os.path.join(workdir, "results.json")):
    evidence.append("results.json")
  sums = os.path.join(workdir, "checksums")
  saved = sorted(int(n[:-5]) for n in (os.listdir(sums) if os.path.isdir(sums) else [])
                 if n.endswith(".json") and n[:-5].isdigit())
  if saved:
    evidence.append(f"checksums of steps {', '.join(map(str, saved))}")
  steps = _metrics_steps(os.path.join(workdir, "metrics.jsonl"))
  if steps and max(steps) >= checkpoint_every:
    evidence.append(f"metrics.jsonl with {len(steps)} rows up to step {max(steps)}")
  if not evidence:
    return
  if os.path.islink(root) and not os.path.exists(root):
    missing = f"checkpoints/ is a symlink to {os.readlink(root)}, which does not exist"
  elif not os.path.lexists(root):
    missing = "there is no checkpoints/ folder"
  elif not os.path.isdir(root):
    missing = "checkpoints is not a folder"
  elif not os.access(root, os.R_OK | os.X_OK):
    missing = "checkpoints/ cannot be read"
  elif not any(n.isdigit() for n in os.listdir(root)):
    missing = "checkpoints/ holds no step folder"
  else:
    return
  raise ResumeError(
      f"dfax.train: {workdir} holds a run's history ({'; '.join(evidence)}) but {missing}; "
      "starting again would redo and overwrite that history. If the checkpoints are on a "
      "volume that is not mounted, mount it and rerun; to start over on purpose, add "
      f"--restart (restart=True in Python), which moves the old files to {workdir}/"
      f"{RESTARTED}<time>/; or use a new --workdir.")


def restart(workdir: str) -> str | None:
  """Moves everything in ``workdir`` but the lock into ``restarted-<time>/``; its path or None."""
  names = [n for n in os.listdir(workdir) if n not in _KEEP and not n.startswith(RESTARTED)]
  if not names:
    return None
  stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
  dest, n = os.path.join(workdir, RESTARTED + stamp), 1
  while os.path.lexists(dest):
    dest, n = os.path.join(workdir, f"{RESTARTED}{stamp}.{n}"), n + 1
  os.mkdir(dest)
  for name in names:
    os.rename(os.path.join(workdir, name), os.path.join(dest, name))
  return dest
