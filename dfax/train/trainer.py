"""The training loop: jitted pure steps, orbax checkpoints, metrics and plots.

What a run guarantees (checkpoints kept, resumes refused, exit statuses) is
described in docs/reliability.md.

Examples:
  A full run (minutes; ``python -m dfax.train`` is the same from the shell),
  so it is not run as a doctest:

  ```python
  from dfax.train.config_file import load_config
  from dfax.train.trainer import train_and_evaluate
  results = train_and_evaluate(load_config("configs/mnist_mlp.py"), "workdirs/mnist_mlp_dfa")
  ```
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import zlib
from typing import Any, Iterable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from tqdm.auto import tqdm

from dfax.train import (checkpoint, data_identity, distributed, interrupts, lock, methods,
                        metrics, optim, plots, progress_bar, registry, resume, run_log,
                        validate)
from dfax.train import workdir as workdirs
from dfax.train.errors import (ConfigError, NonFiniteLossError, RunError, WriteFailedError,
                               refused)
from dfax.train.steps import (TrainState, describe_bad_batch, evaluate,  # noqa: F401
                              make_steps, model_logits, placers)


@dataclasses.dataclass
class _Run:
  """Everything a start builds before it writes anything."""

  config: Any
  model: Any
  task: registry.TaskData
  opt: optax.GradientTransformation
  state: TrainState
  total_steps: int
  steps: tuple
  data: dict
  older_layout: Any = None  # the state as dfax laid it out before optim.clip_then


def _load_data(config) -> registry.TaskData:
  """``registry.load_task``, with a data set that cannot be read reported in one line."""
  data_identity.check_env()
  try:
    return registry.load_task(config)
  except RunError:
    raise
  except (OSError, ValueError, EOFError, zlib.error, KeyError, IndexError) as e:
    raise refused(e, f"cannot load the data set {config.dataset.name!r}", "Replace the damaged "
                  "or missing files (or point --config.data_dir / DFAX_DATA_DIR at a good "
                  "copy).") from None


def _build(config, skip_batches: Iterable[int]) -> _Run:
  """Checks the config, builds model, data, optimizer and the traced step; writes nothing."""
  validate.check_config(config)  # also sets mesh.data=0 to the devices in use
  task = _load_data(config)
  try:
    model = registry.build_model(config, task.num_classes)
  except (ValueError, TypeError) as e:
    raise refused(e, f"config.model cannot build model {config.model.name!r}") from None
  total_steps = config.num_steps or config.num_epochs * task.steps_per_epoch
  validate.check_task(config, task, total_steps)
  bad = [s for s in skip_batches if not isinstance(s, int) or not 0 <= s < total_steps]
  if bad:
    raise ConfigError(f"dfax.train: skip_batches {bad} are not steps of this run (0 to "
                      f"{total_steps - 1}); name the steps a non-finite-loss error reported.")
  try:
    opt = methods.get(config.method).wrap_optimizer(optim.make_optimizer(config, total_steps))
    params = model.init(jax.random.key(config.seed), jnp.asarray(task.x_eval[:1]))
    state = TrainState(step=jnp.asarray(0, jnp.int32), params=params,
                       opt_state=opt.init(params))
    steps = make_steps(config, model, opt)
    x0, y0 = next(task.train_batches(0))
    jax.eval_shape(steps[1], state, x0, y0)  # projector, feedback and shapes, before writing
  except ConfigError:
    raise
  except (ValueError, TypeError, KeyError) as e:
    raise ConfigError(f"dfax.train: this config cannot build its train step: {e}") from None
  older = None
  if config.grad_clip:  # checkpoints of optax.chain(clip, optimizer) still resume
    chained = methods.get(config.method).wrap_optimizer(
        optim.make_optimizer(config, total_steps, chain_clip=True))
    older = state.replace(opt_state=chained.init(params))
  return _Run(config, model, task, opt, state, total_steps, steps,
              data_identity.identify(config, task), older)


def train_and_evaluate(config, workdir: str, *, allow_changes: Iterable[str] = (),
                       skip_batches: Iterable[int] = (), restart: bool = False) -> dict[str, Any]:
  """Trains per ``config``, resuming from ``workdir`` if it holds a run.

  Args:
    config: an ml_collections ConfigDict (see configs/); it is not changed.
    workdir: output directory: checkpoints/, metrics.jsonl, results.json,
      curves.png, alignment.png, config.json, changes.jsonl, lock.
    allow_changes: dotted config keys (or sections, e.g. "dfa") allowed to
      differ from the workdir's saved config; see ``resume.FREE_KEYS``.
    skip_batches: steps whose batches get no update (their step counts);
      the steps a non-finite-loss error names.
    restart: start over in a workdir that holds a run: its files are first
      moved to ``workdir/restarted-<time>/`` (``--restart``).

  Returns:
    The results dict also written to ``results.json``. ``status`` is
    "completed", or "interrupted" after SIGTERM/SIGINT (checkpoint saved,
    ``signal`` holds its number; ``started`` is False when the signal came
    before anything was written). A workdir that already holds the completed
    run returns its results unchanged (``already_completed``) and writes nothing.

  Raises:
    ConfigError, ConfigChangedError, WorkdirBusyError, ResumeError: before
      anything is written.
    NonFiniteLossError: the loss or update of a step was not finite; the
      state before that step is saved.
    WriteFailedError: a checkpoint or metrics row could not be written.
  """
  config, allow_changes = config.copy_and_resolve_references(), tuple(allow_changes)
  skips = set(skip_batches)
  with interrupts.Interrupt() as interrupt:
    workdir = workdirs.check_path(workdir)
    run = _build(config, skips)
    if interrupt.signum:
      return {"status": "interrupted", "signal": interrupt.signum, "steps": 0,
              "started": False}
    if distributed.is_multiprocess() and not distributed.is_primary():
      return _follow(run, workdir, interrupt)
    workdirs.check_space(workdir, _state_bytes(run.state) + (16 << 10))
    workdirs.make(workdir)
    with lock.WorkdirLock(workdir) as owner:
      if owner.note:
        logging.warning("dfax.train: %s", owner.note)
      announce = distributed.Announce(run.total_steps)
      try:
        if restart:
          moved = workdirs.restart(workdir)
          if moved:
            logging.warning("dfax.train: --restart: moved the earlier files of %s to %s.",
                            workdir, moved)
        return _resume_and_train(run, workdir, allow_changes, skips, interrupt, announce)
      finally:
        announce.refused()  # a start refused by process 0 stops the others too


def _state_bytes(state) -> int:
  return int(sum(np.dtype(x.dtype).itemsize * int(np.prod(x.shape))
                 for x in jax.tree.leaves(state)))


def _follow(run: _Run, workdir: str, interrupt) -> dict[str, Any]:
  """A process other than 0 of a multi-host run: trains as told, writes nothing."""
  code, start = (int(v) for v in distributed.share_from_primary(np.zeros(2, np.int64)))
  if code == distributed.Announce.REFUSED:
    raise ConfigError("dfax.train: process 0 refused or stopped this start; its message "
                      "says why.")
  if code == distributed.Announce.COMPLETE:
    return {"status": "completed", "already_completed": True, "method": run.config.method,
            "name": run.config.name, "process": jax.process_index()}
  state, mask = distributed.share_from_primary(
      (run.state, np.zeros(run.total_steps, np.bool_)))
  skips = {int(s) for s in np.flatnonzero(mask)}
  return _loop(run, workdir, state, start, distributed.NoLog(), distributed.NoCheckpoints(),
               skips, interrupt)


def _resume_and_train(run: _Run, workdir, allow_changes, skips, interrupt,
                      announce: distributed.Announce) -> dict[str, Any]:
  config = run.config
  new_config = json.loads(config.to_json_best_effort())
  # Every check runs before the first write: a refused start leaves the workdir as it was.
  saved_config = metrics.read_json(os.path.join(workdir, "config.json"))
  old_results = metrics.read_json(os.path.join(workdir, "results.json"))
  saved_data = metrics.read_json(os.path.join(workdir, data_identity.DATA))
  metrics_path = os.path.join(workdir, "metrics.jsonl")
  if os.path.exists(metrics_path):
    metrics.read_metrics_checked(metrics_path, warn=False)  # a damaged line is refused here
  restored, report = checkpoint.find_newest_readable(workdir, run.state, config.max_to_keep,
                                                     older_layout=run.older_layout)
  changes, held = {}, restored is not None or old_results is not None
  if held and saved_config is None:
    logging.warning("dfax.train: %s holds a run but no config.json; this config cannot be "
                    "checked against it and is recorded as the run's config.", workdir)
  elif held:
    changes = resume.check_changes(saved_config, new_config, allow_changes, workdir)
  if held:
    changes.update(data_identity.check(saved_data, run.data, allow_changes, workdir))
    if saved_data is None:
      logging.warning("dfax.train: %s records no data identity (data.json); this start's data "
                      "(%s) is recorded as the run's.", workdir,
                      data_identity.identity.describe(run.data))
    if (old_results and old_results.get("status") == "completed"
        and not set(changes) - {"data_path"} and old_results.get("steps") == run.total_steps):
      logging.warning("dfax.train: %s already holds this completed run; nothing changed.",
                      workdir)
      _repair_plots(run, workdir)
      announce.complete()
      return {**old_results, "already_completed": True}
  if restored is None:
    saved_every = (saved_config or {}).get("checkpoint_every", config.checkpoint_every)
    workdirs.lost_history(workdir, saved_every if isinstance(saved_every, int) and
                          saved_every > 0 else config.checkpoint_every)
  # The checks passed: from here on the start writes.
  for line in report.lines():
    logging.warning("%s", line)
  checkpoint.set_aside_skipped(workdir, report)
  state = restored if restored is not None else run.state
  start = int(state.step)
  if restored is not None:
    logging.warning("dfax.train: resuming %s from the checkpoint of step %d.", workdir, start)
  if restored is None:
    changes = {}
  if changes:
    resume.record_changes(workdir, start, changes)
  if changes or saved_config is None or restored is None:
    metrics.write_json(os.path.join(workdir, "config.json"), new_config)
  if changes or saved_data is None or restored is None:
    metrics.write_json(os.path.join(workdir, data_identity.DATA), run.data)
  if skips - resume.recorded_skips(workdir):
    resume.record_skips(workdir, start, skips)
  skips |= resume.recorded_skips(workdir)
  writer = metrics.MetricsWriter(workdir, resume_step=start if restored is not None else -1)
  ckpts = checkpoint.Checkpoints(workdir, config.max_to_keep)
  events = run_log.event_writer(workdir, start, new_config, metrics.eval_split(config.dataset.name)) \
      if config.tensorboard else None
  log = run_log.RunLog(writer, events, ckpts)
  announce.starts(state, start, skips)
  try:
    return _loop(run, workdir, state, start, log, ckpts, skips, interrupt)
  finally:
    ckpts.close()
    log.close_events()


def _repair_plots(run: _Run, workdir: str) -> None:
  """A completed run lacking a plot (killed between results.json and it): plots it again."""
  missing = [n for n in plots.run_plot_names(run.config)
             if not os.path.exists(os.path.join(workdir, n))]
  path = os.path.join(workdir, "metrics.jsonl")
  if not missing or not os.path.exists(path):
    return
  try:
    plots.plot_run(metrics.read_metrics(path), workdir, run.config)
  except OSError as e:
    raise WriteFailedError(f"dfax.train: the completed run in {workdir} lacks {missing} and "
                           f"they could not be written: {checkpoint.write_failure_reason(e)}; "
                           "free space and rerun the same command.") from None
  logging.warning("dfax.train: %s lacked %s; made from metrics.jsonl.", workdir,
                  ", ".join(missing))


def _loop(run: _Run, workdir, state, start, log, ckpts, skips, interrupt):
  config, task, total_steps = run.config, run.task, run.total_steps
  loss_fn, train_step, eval_step, alignment_step = run.steps
  method = methods.get(config.method)
  place_state, place, place_eval = placers(config)
  state = place_state(state)
  batches = task.train_batches(start)
  cost = {}
  if method.uses_feedback and config.dfa.projector == "opu":
    x0, y0 = next(task.train_batches(start))
    cost = methods.opu_cost(loss_fn, config, run.model, state.params, x0, y0)
    if start == 0:
      log.write({"step": start, "opu_cost_per_step": cost})
  t0 = time.perf_counter()
  write = log.write
  split = metrics.eval_split(config.dataset.name)
  schedule = optim.make_schedule(config, total_steps)
  with tqdm(total=total_steps, initial=start, desc=f"{config.method} {config.name}",
            bar_format=progress_bar.BAR_FORMAT,
            disable=not config.progress_bar or not distributed.is_primary()) as bar:
    progress = progress_bar.Progress(bar, split, np.ndim(task.y_eval) > 1, config.batch_size)
    prev = None  # the state before the last step: kept if the next one diverges
    while int(state.step) < total_steps and not interrupt.signum:
      step = int(state.step)
      began = time.perf_counter()
      x, y = next(batches)
      if step in skips:
        prev, state = None, state.replace(step=state.step + 1)
        write({"step": step + 1, "skipped_batch": step})
      else:
        new_state, m = train_step(state, place(x), place(y))
        loss = float(m["train_loss"])  # waits for the step: the time below is the step's
        progress.timed(time.perf_counter() - began)
        if not bool(m["finite"]):
          keep = state if np.isfinite(loss) else prev
          dropped = ckpts.rewind(keep, step, f"the loss at step {step} was not finite")
          raise _non_finite(loss, step, x, y, task.num_classes, workdir, keep, dropped, config)
        prev, state = state, new_state
        step = int(state.step)
        if step % config.log_every == 0 or step == total_steps:
          # learning_rate: the schedule's value for this step's update (optax counts from 0).
          write({"step": step, "train_loss": loss, "grad_norm": m["grad_norm"],
                 "learning_rate": float(schedule(step - 1))})
          log.write_events({"step": step, "throughput": progress.throughput()})
          progress.trained(loss)
        if step % config.eval_every == 0 or step == total_steps:
          ev = evaluate(eval_step, state.params, task.x_eval, task.y_eval,
                        config.eval_batch_size, place_eval, split=split)
          write({"step": step, **ev})
          progress.evaluated(ev)
        if method.logs_alignment and config.alignment_every and \
            step % config.alignment_every == 0:
          cos = alignment_step(state, place(x), place(y))
          write({"step": step, "alignment": {k: float(v) for k, v in cos.items()}})
      bar.update(1)
      if int(state.step) % config.checkpoint_every == 0:
        ckpts.save(state)
  ckpts.save(state, force=True)
  done = int(state.step) >= total_steps
  wall = time.perf_counter() - t0
  final = evaluate(eval_step, state.params, task.x_eval, task.y_eval, config.eval_batch_size,
                   place_eval, split=split)
  results = {"status": "completed" if done else "interrupted", "method": config.method,
             "name": config.name, "steps": int(state.step), "total_steps": total_steps,
             "wall_time_s": wall, "eval_split": split, **final, "resumed_from": start,
             "backend": jax.default_backend(), "num_classes": task.num_classes,
             "devices": config.mesh.data * config.mesh.model * config.mesh.stage}
  if not done:
    results["signal"] = interrupt.signum
  if skips:
    results["skipped_batches"] = sorted(skips)
  changes = resume.read_changes(workdir) if distributed.is_primary() else []
  if any(row.get("changes") for row in changes):
    results["config_changes"] = [row for row in changes if row.get("changes")]
  if cost:
    results["opu_cost_per_step"] = cost
  if done and interrupt.signum:
    logging.warning("dfax.train: signal %d came after the last step; the run is complete and "
                    "is saved whole.", interrupt.signum)
  if not distributed.is_primary():
    return results
  what = "the results"
  try:
    if done:  # plots and TensorBoard are part of completion: written before results.json
      log.finish()
      what = "the plots"
      plots.plot_run(metrics.read_metrics(log.writer.path), workdir, config)
      what = "the results"
    metrics.write_json(os.path.join(workdir, "results.json"), results)
  except WriteFailedError:
    raise
  except OSError as e:
    raise WriteFailedError(
        f"dfax.train: could not write {what} of step {int(state.step)} to {workdir}: "
        f"{checkpoint.write_failure_reason(e)}; the checkpoints (steps {ckpts.steps()}) and "
        "metrics.jsonl are intact. Free space and rerun the same command to complete the "
        "run.") from None
  return results


def _non_finite(loss, step, x, y, num_classes, workdir, keep, dropped, config) -> RunError:
  bad = describe_bad_batch(x, y, num_classes)
  what = f"the loss was {loss}" if not np.isfinite(loss) else \
      f"the loss was finite ({loss:.4g}) but the gradients or updates were not"
  aside = (f" Checkpoints {dropped} came after it and were moved to "
           f"{checkpoint.SET_ASIDE}/." if dropped else "")
  if keep is not None:
    kept = (f"The last state whose loss was finite (step {int(keep.step)}) is the newest "
            f"checkpoint in {workdir}/checkpoints.{aside}")
  else:
    kept = (f"The state this start resumed from gives that loss, so a resume starts from the "
            f"newest checkpoint before step {step}.{aside}")
  if bad:
    return NonFiniteLossError(
        f"dfax.train: step {step} is not finite ({what}) because its batch is bad: {bad} "
        f"(the batch of step {step}, dataset {config.dataset.name!r}, seed {config.seed}). "
        f"{kept} To go on without that batch, rerun with --skip_batches={step} "
        f"(skip_batches=[{step}] in Python).")
  return NonFiniteLossError(
      f"dfax.train: step {step} is not finite ({what}); its batch is fine, so training "
      f"diverged. {kept} To go on, lower the learning rate or clip gradients and allow the "
      f"change, e.g. --config.learning_rate={config.learning_rate / 10:g} "
      "--allow_changes=learning_rate, or --config.grad_clip=1.0 --allow_changes=grad_clip.")
