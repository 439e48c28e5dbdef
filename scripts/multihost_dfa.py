"""One process of a multi-host DFA training step (jax.distributed, CPU or GPU).

  python scripts/multihost_dfa.py --coordinator 127.0.0.1:12345 --num-processes 2 --process-id 0
  python scripts/multihost_dfa.py --coordinator 127.0.0.1:12345 --num-processes 2 --process-id 1

Each process feeds its own slice of the global batch; parameters are
replicated over the global 'data' mesh; each process regenerates the feedback
matrices from the same keys. Prints the loss and a parameter checksum after
``--steps`` Adam steps, identical on every process.
"""

from __future__ import annotations

import argparse
import json

import jax


def parse(argv=None) -> argparse.Namespace:
  """The command line's arguments."""
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--coordinator", required=True)
  parser.add_argument("--num-processes", type=int, required=True)
  parser.add_argument("--process-id", type=int, required=True)
  parser.add_argument("--steps", type=int, default=3)
  return parser.parse_args(argv)


def main(argv=None):
  args = parse(argv)
  # Cross-process collectives on CPU go through gloo (GPUs use NCCL by default).
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)
  print(json.dumps(run(args.steps)), flush=True)


def run(steps: int) -> dict:
  """The DFA steps on a mesh over every device of every process."""
  import numpy as np  # noqa: PLC0415
  import optax  # noqa: PLC0415
  from jax.sharding import NamedSharding, PartitionSpec as P  # noqa: PLC0415

  import dfax  # noqa: PLC0415
  from dfax import parallel  # noqa: PLC0415
  from dfax.models import MLP  # noqa: PLC0415

  model = MLP(features=(32, 32), num_classes=4)
  rng = np.random.default_rng(0)
  x_all = rng.normal(size=(16, 8)).astype(np.float32)
  y_all = rng.integers(0, 4, size=16).astype(np.int32)
  mesh = parallel.make_mesh(jax.device_count())
  params = model.init(jax.random.key(0), x_all[:1])
  opt = optax.adam(1e-2)
  opt_state = opt.init(params)
  replicated = NamedSharding(mesh, P())
  params, opt_state = jax.device_put((params, opt_state), replicated)
  per_process = len(x_all) // jax.process_count()
  lo = jax.process_index() * per_process
  global_batch = lambda a: jax.make_array_from_process_local_data(
      parallel.batch_sharding(mesh), a[lo:lo + per_process], a.shape)
  x, y = global_batch(x_all), global_batch(y_all)
  loss_fn = lambda p, x, y: optax.softmax_cross_entropy_with_integer_labels(
      model.apply(p, x), y).mean()

  @jax.jit
  def step(p, s, x, y):
    loss, g = dfax.dfa_value_and_grad(loss_fn)(p, x, y)
    u, s = opt.update(g, s, p)
    return optax.apply_updates(p, u), s, loss

  for _ in range(steps):
    params, opt_state, loss = step(params, opt_state, x, y)
  checksum = sum(float(np.asarray(jax.device_get(a)).sum()) for a in jax.tree.leaves(params))
  return {"process": jax.process_index(), "devices": jax.device_count(),
          "loss": float(loss), "checksum": checksum}


if __name__ == "__main__":
  main()
