"""orbax checkpoints of the train state: periodic, keep N, exact resume, damage-aware.

A workdir's ``checkpoints/`` holds one orbax step folder per saved step.
After each save the size and CRC-32 of every file in the step folder go to
``checksums/<step>.json``. On resume the newest step folder that matches its
checksums, fits the model and optimizer, restores, and holds only finite
numbers is used; the ones that fail are moved to
``checkpoints_set_aside/`` (never deleted; the reasons are in its
``reasons.jsonl``) and reported. A state whose loss turned out non-finite is
set aside the same way (see ``Checkpoints.rewind``).

Examples:
  >>> import tempfile, flax, numpy as np
  >>> @flax.struct.dataclass
  ... class State:                      # any pytree with a ``step``, e.g. a TrainState
  ...   step: np.ndarray
  ...   w: np.ndarray
  >>> workdir = tempfile.mkdtemp()
  >>> state = State(step=np.int32(3), w=np.ones(4, np.float32))
  >>> manager = make_manager(workdir, max_to_keep=3)
  >>> save(manager, state)
  >>> manager.wait_until_finished()
  >>> restored, report = find_newest_readable(workdir, like=state, max_to_keep=3)
  >>> int(restored.step), restored.w.tolist()
  (3, [1.0, 1.0, 1.0, 1.0])
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import shutil
import zlib
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from dfax.train.errors import WriteFailedError, ResumeError

CHECKPOINTS, CHECKSUMS, SET_ASIDE = "checkpoints", "checksums", "checkpoints_set_aside"
_TMP_MARK = ".orbax-checkpoint-tmp"


def make_manager(workdir: str, max_to_keep: int) -> ocp.CheckpointManager:
  """A CheckpointManager in ``workdir/checkpoints`` keeping the newest ``max_to_keep``."""
  # A multi-host run's checkpoints are process 0's alone (dfax.train.distributed).
  root = os.path.abspath(os.path.join(workdir, CHECKPOINTS))
  multi = {}
  if jax.process_count() > 1:  # orbax leaves the folder to us then
    os.makedirs(root, exist_ok=True)
    multi = {"multiprocessing_options": ocp.options.MultiprocessingOptions(
        primary_host=0, active_processes={0})}
  options = ocp.CheckpointManagerOptions(
      preservation_policy=ocp.checkpoint_managers.LatestN(max_to_keep), create=not multi,
      **multi)
  return ocp.CheckpointManager(root,
                               options=options, item_handlers=ocp.StandardCheckpointHandler())


def restore_params(workdir: str, step: int | None = None) -> tuple[int, Any]:
  """The parameters a run saved: ``(step, params)`` of ``step``'s checkpoint, else the newest.

  Args:
    workdir: the run's directory (the one given to ``--workdir``).
    step: a saved step; None for the newest.

  Returns:
    The step and its ``params`` as saved (host arrays).
  """
  manager = make_manager(workdir, max_to_keep=1 << 30)
  try:
    step = manager.latest_step() if step is None else step
    return step, manager.restore(step)["params"]
  finally:
    manager.close()


def _file_sums(folder: str) -> dict[str, list[int]]:
  sums = {}
  for root, _, files in os.walk(folder):
    for name in files:
      path = os.path.join(root, name)
      crc = 0
      with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
          crc = zlib.crc32(chunk, crc)
      sums[os.path.relpath(path, folder)] = [os.path.getsize(path), crc]
  return sums


def _is_disk_full(e: BaseException) -> bool:
  while e is not None:
    if getattr(e, "errno", None) == errno.ENOSPC or any(
        s in str(e) for s in ("No space left", "RESOURCE_EXHAUSTED", "ENOSPC")):
      return True
    e = e.__cause__ or e.__context__
  return False


def write_failure_reason(e: BaseException) -> str:
  """One line for a failed write: 'the disk is full' or the error's first line."""
  if _is_disk_full(e):
    return "the disk is full (no space left on device)"
  return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


def save(manager: ocp.CheckpointManager, state: Any, *, force: bool = False) -> None:
  """Saves ``state`` at its step, waits until it is on disk, then records its checksums.

  Raises:
    WriteFailedError: one line naming the folder, the step, the reason
      and the earlier checkpoints, which stay intact.
  """
  step = int(state.step)
  if step in manager.all_steps():
    return
  if jax.process_count() > 1:  # replicated global arrays -> this host's copy
    state = jax.device_get(state)
  root = str(manager.directory)
  earlier = sorted(manager.all_steps())
  try:
    manager.save(step, args=ocp.args.StandardSave(state), force=force)
    manager.wait_until_finished()
    workdir = os.path.dirname(root)
    sums_dir = os.path.join(workdir, CHECKSUMS)
    os.makedirs(sums_dir, exist_ok=True)
    _write_json(os.path.join(sums_dir, f"{step}.json"),
                _file_sums(os.path.join(root, str(step))))
    kept = {str(s) for s in manager.all_steps()}
    for name in os.listdir(sums_dir):
      if name.endswith(".json") and name[:-5] not in kept:
        os.remove(os.path.join(sums_dir, name))
  except Exception as e:  # orbax and tensorstore wrap OSError in their own types
    for name in os.listdir(root):
      if name.startswith(f"{step}{_TMP_MARK}"):  # our own half-written save
        shutil.rmtree(os.path.join(root, name), ignore_errors=True)
    raise WriteFailedError(
        f"dfax.train: could not write the checkpoint of step {step} to {root}: "
        f"{write_failure_reason(e)}; the earlier checkpoints "
        f"({'steps ' + ', '.join(map(str, earlier)) if earlier else 'none'}) are intact."
    ) from None


def _write_json(path: str, obj: Any) -> None:
  tmp = f"{path}.tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


@dataclasses.dataclass
class RestoreReport:
  """What a resume found: the step used, the folders skipped and why, notes."""

  step: int | None = None
  skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)
  notes: list[str] = dataclasses.field(default_factory=list)

  def lines(self) -> list[str]:
    out = [f"dfax.train: skipped checkpoint {name}: {why}; moved to {SET_ASIDE}/{name}."
           for name, why in self.skipped]
    return out + [f"dfax.train: {n}" for n in self.notes]


def _leaf_specs(tree) -> dict[str, tuple[tuple[int, ...], str]]:
  def name(k):
    return str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))))
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {"/".join(name(k) for k in path): (tuple(x.shape), str(np.dtype(x.dtype)))
          for path, x in leaves}


def _structure_mismatch(manager, step: int, like) -> str:
  """'' if the checkpoint's arrays fit ``like``, else the first differences."""
  saved, want = _leaf_specs(manager.item_metadata(step)), _leaf_specs(like)
  diffs = [f"{k}: {saved.get(k, 'absent')} saved, {want.get(k, 'absent')} here"
           for k in sorted(set(saved) | set(want)) if saved.get(k) != want.get(k)]
  return "; ".join(diffs[:3]) + (f"; ... ({len(diffs)} in all)" if len(diffs) > 3 else "")


def _checksum_problem(workdir: str, name: str, report: RestoreReport | None = None) -> str:
  path = os.path.join(workdir, CHECKSUMS, f"{name}.json")
  if not os.path.exists(path):
    return ""  # saved by an older dfax, or killed between commit and checksums
  try:
    with open(path) as f:
      want = json.load(f)
    if not isinstance(want, dict) or not all(
        isinstance(v, list) and len(v) == 2 for v in want.values()):
      raise ValueError("not a table of file sizes and CRCs")
  except (OSError, ValueError) as e:  # garbled, empty or torn: the checkpoint may be fine
    if report is not None:
      report.notes.append(f"{CHECKSUMS}/{name}.json is unreadable ({str(e)[:80]}); checkpoint "
                          f"{name} is checked by restoring it instead.")
    return ""
  have = _file_sums(os.path.join(workdir, CHECKPOINTS, name))
  for rel in sorted(set(want) | set(have)):
    if rel not in have:
      return f"file {rel} is missing"
    if rel not in want:
      continue
    if have[rel][0] != want[rel][0]:
      return f"file {rel} has {have[rel][0]} bytes, {want[rel][0]} were written"
    if have[rel][1] != want[rel][1]:
      return f"file {rel} changed since it was written (CRC-32 mismatch)"
  return ""


def _scan(root: str, report: RestoreReport) -> list[int]:
  steps = []
  for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
    path = os.path.join(root, name)
    if _TMP_MARK in name:
      report.notes.append(f"ignored {CHECKPOINTS}/{name}: a save that never finished.")
    elif not name.isdigit() or not os.path.isdir(path):
      report.notes.append(f"ignored {CHECKPOINTS}/{name}: not a step folder.")
    elif not os.listdir(path):
      report.skipped.append((name, "an empty folder"))
    else:
      steps.append(int(name))
  return sorted(steps, reverse=True)


def _set_aside(workdir: str, skipped: list[tuple[str, str]]) -> None:
  """Moves step folders (name, reason) to ``checkpoints_set_aside/``, logging why."""
  if not skipped:
    return
  aside = os.path.join(workdir, SET_ASIDE)
  os.makedirs(aside, exist_ok=True)
  for name, why in skipped:
    dest, n = os.path.join(aside, name), 1
    while os.path.exists(dest):
      dest, n = os.path.join(aside, f"{name}.{n}"), n + 1
    os.rename(os.path.join(workdir, CHECKPOINTS, name), dest)
    with open(os.path.join(aside, "reasons.jsonl"), "a") as f:
      f.write(json.dumps({"folder": os.path.basename(dest), "reason": why}) + "\n")
    sums = os.path.join(workdir, CHECKSUMS, f"{name}.json")
    if os.path.exists(sums):
      os.remove(sums)


class Checkpoints:
  """The run's checkpoint manager, and rewinding it past a state found to be bad.

  Args:
    workdir: the run's directory.
    max_to_keep: how many of the newest checkpoints to keep.
  """

  def __init__(self, workdir: str, max_to_keep: int):
    self.workdir, self.max_to_keep = workdir, max_to_keep
    self.manager = make_manager(workdir, max_to_keep)

  def steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def save(self, state: Any, *, force: bool = False) -> None:
    save(self.manager, state, force=force)

  def rewind(self, keep: Any | None, bad_step: int, reason: str) -> list[int]:
    """Sets aside the checkpoints after ``keep`` (or from ``bad_step`` on) and saves ``keep``.

    Args:
      keep: the last good state, or None when it is not in memory.
      bad_step: the step that failed.
      reason: recorded for each folder set aside.

    Returns:
      The steps set aside.
    """
    first_bad = int(keep.step) + 1 if keep is not None else bad_step
    drop = [s for s in self.steps() if s >= max(first_bad, 1)]
    if drop:
      self.manager.close()
      _set_aside(self.workdir, [(str(s), reason) for s in drop])
      self.manager = make_manager(self.workdir, self.max_to_keep)
    if keep is not None:
      self.save(keep, force=True)
    return drop

  def close(self) -> None:
    try:
      self.manager.close()
    except Exception:  # noqa: BLE001 - closing after a failed write must not hide it
      pass


def find_newest_readable(workdir: str, like: Any, max_to_keep: int, *,
                         older_layout: Any | None = None) -> tuple[Any | None, RestoreReport]:
  """Finds the newest readable checkpoint without changing anything on disk.

  Args:
    workdir: the run's directory.
    like: a state with the shapes and dtypes to restore.
    max_to_keep: the run's ``max_to_keep``.
    older_layout: optionally, the same state as an older dfax laid it out
      (the same arrays in the same order, another tree structure); a
      checkpoint in that layout is restored and returned in ``like``'s.

  Returns:
    ``(state or None, report)``; ``report.skipped`` lists the step folders
    that cannot be used and why.

  Raises:
    ResumeError: a checkpoint fits another model or optimizer, or step
      folders exist and none of them is readable.
  """
  report = RestoreReport()
  root = os.path.join(workdir, CHECKPOINTS)
  steps = _scan(root, report)
  if not steps:
    if report.skipped:
      raise ResumeError(_none_readable(root, report))
    return None, report
  manager = make_manager(workdir, max_to_keep)
  abstract = _abstract(like)
  try:
    for step in steps:
      why = _checksum_problem(workdir, str(step), report)
      if not why:
        try:
          mismatch = _structure_mismatch(manager, step, like)
        except Exception as e:  # noqa: BLE001 - any failure to read means damaged
          why = f"its metadata cannot be read ({write_failure_reason(e)})"
        else:
          use = like
          if mismatch and older_layout is not None and _same_leaves(like, older_layout) \
              and not _structure_mismatch(manager, step, older_layout):
            use, mismatch = older_layout, ""
          if mismatch:
            raise ResumeError(
                f"dfax.train: the checkpoint of step {step} in {root} holds a different model "
                f"or optimizer than this config ({mismatch}). Such a change cannot resume; "
                "train it in a new --workdir.")
      if not why:
        try:
          state = manager.restore(step, args=ocp.args.StandardRestore(
              abstract if use is like else _abstract(use)))
          if use is not like:  # the same leaves, in like's structure
            state = jax.tree.unflatten(jax.tree.structure(like), jax.tree.leaves(state))
        except Exception as e:  # noqa: BLE001
          why = f"it cannot be restored ({write_failure_reason(e)})"
        else:
          if all(np.isfinite(np.asarray(a)).all() for a in jax.tree.leaves(state)
                 if np.issubdtype(np.asarray(a).dtype, np.floating)):
            report.step = step
            return state, report
          why = "it holds non-finite numbers"
      report.skipped.append((str(step), why))
  finally:
    manager.close()
  raise ResumeError(_none_readable(root, report))


def _abstract(tree) -> Any:
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)


def _same_leaves(a, b) -> bool:
  """Whether two trees hold leaves of the same shapes and dtypes in the same order."""
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  return len(la) == len(lb) and all(
      x.shape == y.shape and x.dtype == y.dtype for x, y in zip(la, lb))


def _none_readable(root: str, report: RestoreReport) -> str:
  reasons = "; ".join(f"step {n}: {why}" for n, why in report.skipped)
  return (f"dfax.train: no readable checkpoint in {root} ({reasons}). Nothing was changed. "
          "To start this run over, rerun with --restart (restart=True in Python; the old "
          "files are moved to restarted-<time>/ in the workdir), or use a new --workdir.")


def set_aside_skipped(workdir: str, report: RestoreReport) -> None:
  """Moves the folders ``find_newest_readable`` skipped to ``checkpoints_set_aside/``."""
  _set_aside(workdir, report.skipped)
