"""The jitted train, eval and alignment steps of a run, and where their inputs go.

``make_steps`` builds the steps from a config, a model and an optimizer;
``placers`` puts the state and the batches on the run's mesh (every device
by default, every process's in a multi-host run); ``evaluate`` runs the eval
step over the evaluation split and names its metrics after it.
"""

from __future__ import annotations

from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from dfax import parallel
from dfax.train import alignment, distributed, families, methods, pipelined


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any


def model_logits(config, model, params, x) -> jax.Array:
  """The logits of ``model`` on ``x``, applied as its family's record says (``forward``).

  A Transformer LM goes through ``lm_forward`` (the DFA error before the head
  when ``error_at="hidden"``); MLPs, CNNs and ViTs through ``model.apply``.
  The train, eval and alignment steps all call this.
  """
  return families.get(config.model.name).forward(model, params, x)


def make_steps(config, model, opt):
  method = config.method

  def loss_fn(params, x, y):
    return methods.cross_entropy(model_logits(config, model, params, x), y)

  @jax.jit
  def train_step(state: TrainState, x, y):
    grad_fn = methods.value_and_grad(method, loss_fn, config, model, state.step)
    loss, grads = grad_fn(state.params, x, y)
    updates, opt_state = opt.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new = TrainState(step=state.step + 1, params=params, opt_state=opt_state)
    grad_norm = optax.global_norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & jnp.isfinite(
        optax.global_norm(updates))
    return new, {"train_loss": loss, "grad_norm": grad_norm, "finite": finite}

  @jax.jit
  def eval_step(params, x, y):
    logits = model_logits(config, model, params, x)
    return methods.cross_entropy(logits, y, reduce=jnp.sum), (logits.argmax(-1) == y).sum()

  @jax.jit
  def alignment_step(state: TrainState, x, y):  # the run's gradients against backprop's
    grad_fn = methods.value_and_grad(method, loss_fn, config, model, state.step)
    return alignment.layer_cosines(grad_fn(state.params, x, y)[1],
                                   jax.grad(loss_fn)(state.params, x, y),
                                   stacked=getattr(model, "stacked_params", ()))

  return loss_fn, train_step, eval_step, alignment_step


def evaluate(eval_step, params, x, y, batch_size: int,
             place: Callable[[Any], Any] = lambda a: a, *, split: str) -> dict[str, float]:
  """Mean cross-entropy and accuracy over ``(x, y)``, named by their split.

  Returns ``{"<split>_loss", "<split>_accuracy"}``: ``split`` is what
  ``metrics.eval_split`` gives for the data set ("test" or "val"); an LM's
  accuracy is per token.
  """
  total_ce, correct = 0.0, 0
  for start in range(0, len(x), batch_size):
    ce, ok = eval_step(params, place(x[start:start + batch_size]),
                       place(y[start:start + batch_size]))
    total_ce, correct = total_ce + float(ce), correct + int(ok)
  count = y.size
  return {f"{split}_loss": total_ce / count, f"{split}_accuracy": correct / count}


def placers(config):
  """(place_state, place_batch, place_eval) for the config's mesh; identity on 1 device."""
  if pipelined.is_pipelined(config):
    return (*pipelined.placers(config), lambda x: x)
  data, model = config.mesh.data, config.mesh.model
  if data * model <= 1:
    return (lambda s: s), (lambda x: x), (lambda x: x)
  mesh = parallel.make_mesh(data, model)
  batch = parallel.batch_sharding(mesh)
  if distributed.is_multiprocess():  # every process holds the whole batch; each puts its part
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    place_state = lambda s: jax.tree.map(distributed.global_array, s,
                                         parallel.shard_params(s, mesh))
    return (place_state, lambda x: distributed.global_array(x, batch),
            lambda x: distributed.global_array(x, replicated))
  place_state = lambda s: jax.device_put(s, parallel.shard_params(s, mesh))
  return place_state, lambda x: jax.device_put(x, batch), lambda x: x


def describe_bad_batch(x: np.ndarray, y: np.ndarray, num_classes: int) -> str:
  """What is wrong with a batch itself ('' when nothing is).

  Examples:
    >>> describe_bad_batch(np.array([[0.0, np.nan]]), np.array([12]), 10)
    '1 non-finite input value(s); 1 label(s) outside [0, 10) (e.g. 12)'
  """
  problems = []
  x, y = np.asarray(x), np.asarray(y)
  if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
    problems.append(f"{int((~np.isfinite(x)).sum())} non-finite input value(s)")
  bad = (y < 0) | (y >= num_classes)
  if bad.any():
    problems.append(f"{int(bad.sum())} label(s) outside [0, {num_classes}) "
                    f"(e.g. {int(y[bad].flat[0])})")
  return "; ".join(problems)
