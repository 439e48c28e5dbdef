"""The training loop: jitted pure steps, orbax checkpoints, metrics and plots.

Example::

  from configs import mnist_mlp
  results = train_and_evaluate(mnist_mlp.get_config(), "/tmp/run")
"""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from dfax.models import lm_forward
from dfax import parallel
from dfax.train import alignment, checkpoint, methods, metrics, optim, plots, registry


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any


class _Interrupt:
  """SIGTERM/SIGINT set a flag; the loop saves a checkpoint and returns cleanly."""

  def __init__(self):
    self.requested = False
    self._previous = {}

  def __enter__(self):
    for sig in (signal.SIGTERM, signal.SIGINT):
      try:
        self._previous[sig] = signal.signal(sig, self._handle)
      except ValueError:  # not the main thread: signals stay with the caller
        pass
    return self

  def _handle(self, signum, frame):
    del frame
    self.requested = True

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


def _make_steps(config, model, opt):
  method = config.method

  def loss_fn(params, x, y):
    return methods.cross_entropy(lm_forward(model, params, x), y)

  @jax.jit
  def train_step(state: TrainState, x, y):
    grad_fn = methods.value_and_grad(method, loss_fn, config, model, state.step)
    loss, grads = grad_fn(state.params, x, y)
    updates, opt_state = opt.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new = TrainState(step=state.step + 1, params=params, opt_state=opt_state)
    return new, {"train_loss": loss, "grad_norm": optax.global_norm(grads)}

  @jax.jit
  def eval_step(params, x, y):
    logits = lm_forward(model, params, x)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, y)
    return ce.sum(), (logits.argmax(-1) == y).sum()

  @jax.jit
  def alignment_step(state: TrainState, x, y):
    dfa = methods.value_and_grad("dfa", loss_fn, config, model, state.step)
    return alignment.layer_cosines(dfa(state.params, x, y)[1],
                                   jax.grad(loss_fn)(state.params, x, y),
                                   stacked=getattr(model, "stacked_params", ()))

  return train_step, eval_step, alignment_step


def evaluate(eval_step, params, x, y, batch_size: int) -> dict[str, float]:
  total_ce, correct = 0.0, 0
  for start in range(0, len(x), batch_size):
    ce, ok = eval_step(params, x[start:start + batch_size], y[start:start + batch_size])
    total_ce, correct = total_ce + float(ce), correct + int(ok)
  count = y.size
  return {"eval_loss": total_ce / count, "eval_accuracy": correct / count}


def _placers(config):
  """(place_state, place_batch) for the config's (data, model) mesh; identity on 1 device."""
  data, model = config.mesh.data, config.mesh.model
  if data * model <= 1:
    return (lambda s: s), (lambda x: x)
  mesh = parallel.make_mesh(data, model)
  batch = parallel.batch_sharding(mesh)
  place_state = lambda s: jax.device_put(s, parallel.shard_params(s, mesh))
  return place_state, lambda x: jax.device_put(x, batch)


def train_and_evaluate(config, workdir: str) -> dict[str, Any]:
  """Trains per ``config``, resuming from ``workdir`` if it has checkpoints.

  Args:
    config: an ml_collections ConfigDict (see configs/).
    workdir: output directory: checkpoints/, metrics.jsonl, results.json,
      curves.png, alignment.png, config.json.

  Returns:
    The results dict also written to ``results.json``. ``status`` is
    "completed", or "interrupted" after SIGTERM/SIGINT (checkpoint saved).

  Raises:
    FloatingPointError: the loss became NaN/inf; the last good checkpoint is kept.
  """
  os.makedirs(workdir, exist_ok=True)
  if config.method not in methods.METHODS:
    raise ValueError(f"dfax.train: config.method={config.method!r}; use one of "
                     f"{methods.METHODS}.")
  model, task = registry.build(config)
  total_steps = config.num_steps or config.num_epochs * task.steps_per_epoch
  opt = optim.make_optimizer(config, total_steps, config.method)
  params = model.init(jax.random.key(config.seed), jnp.asarray(task.x_eval[:1]))
  state = TrainState(step=jnp.asarray(0, jnp.int32), params=params, opt_state=opt.init(params))
  manager = checkpoint.make_manager(workdir, config)
  restored = checkpoint.restore_latest(manager, state)
  state = restored if restored is not None else state
  start = int(state.step)
  metrics.write_json(os.path.join(workdir, "config.json"), json.loads(config.to_json_best_effort()))
  writer = metrics.MetricsWriter(workdir, resume_step=start)
  train_step, eval_step, alignment_step = _make_steps(config, model, opt)
  place_state, place = _placers(config)
  state = place_state(state)
  batches = task.train_batches(start)
  cost = {}
  if config.method == "dfa" and config.dfa.projector == "opu":
    x0, y0 = next(task.train_batches(start))
    loss_fn = lambda p, x, y: methods.cross_entropy(lm_forward(model, p, x), y)
    cost = methods.opu_cost(loss_fn, config, model, state.params, x0, y0)
    writer.write({"step": start, "opu_cost_per_step": cost})
  status, t0 = "completed", time.perf_counter()
  with _Interrupt() as interrupt, tqdm(total=total_steps, initial=start,
                                       desc=f"{config.method} {config.name}",
                                       disable=not config.progress_bar) as bar:
    while int(state.step) < total_steps:
      x, y = next(batches)
      x, y = place(x), place(y)
      new_state, m = train_step(state, x, y)
      loss = float(m["train_loss"])
      if not np.isfinite(loss):
        checkpoint.save(manager, state)
        raise FloatingPointError(
            f"dfax.train: the loss became {loss} at step {int(state.step)}; the run stopped "
            f"and the last good checkpoint (step {manager.latest_step()}) is kept in "
            f"{workdir}/checkpoints. Lower the learning rate or enable grad_clip.")
      state, step = new_state, int(new_state.step)
      bar.update(1)
      if step % config.log_every == 0 or step == total_steps:
        writer.write({"step": step, "train_loss": loss, "grad_norm": m["grad_norm"]})
        bar.set_postfix(loss=f"{loss:.4f}")
      if step % config.eval_every == 0 or step == total_steps:
        ev = evaluate(eval_step, state.params, task.x_eval, task.y_eval, config.eval_batch_size)
        writer.write({"step": step, **ev})
      if config.method == "dfa" and config.alignment_every and step % config.alignment_every == 0:
        cos = alignment_step(state, x, y)
        writer.write({"step": step, "alignment": {k: float(v) for k, v in cos.items()}})
      if step % config.checkpoint_every == 0:
        checkpoint.save(manager, state)
      if interrupt.requested:
        status = "interrupted"
        break
  checkpoint.save(manager, state, force=True)
  wall = time.perf_counter() - t0
  final = evaluate(eval_step, state.params, task.x_eval, task.y_eval, config.eval_batch_size)
  results = {"status": status, "method": config.method, "name": config.name,
             "steps": int(state.step), "total_steps": total_steps, "wall_time_s": wall,
             "test_accuracy": final["eval_accuracy"], "test_loss": final["eval_loss"],
             "resumed_from": start, "backend": jax.default_backend()}
  if cost:
    results["opu_cost_per_step"] = cost
  metrics.write_json(os.path.join(workdir, "results.json"), results)
  rows = metrics.read_metrics(writer.path)
  title = f"{config.name} ({config.method})"
  plots.plot_curves(rows, os.path.join(workdir, "curves.png"), title)
  if config.method == "dfa":
    plots.plot_alignment(rows, os.path.join(workdir, "alignment.png"), title)
  manager.close()
  return results
