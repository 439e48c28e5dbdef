"""DFA on MNIST through lightonml's simulated OPU, against dfax's simulator and digital.

  python scripts/opu_lightonml_mnist.py --out docs/figures/opu_lightonml_mnist.png \
      [--steps 468 --features 800,800 --bits 8 --threshold 1.0]

The tanh MLP of configs/mnist_mlp.py (plain, no augmentation), Adam 1e-3,
batch 128, the same data order and initialisation for every run:
  lightonml  ``dfax.opu.make_lightonml_projector(lightonml.OPU(simulated=True))``
             (needs ``bash scripts/install_lightonml.sh``)
  dfax sim   ``dfax.opu.make_projector`` at the same settings (noise off:
             lightonml's simulated device has none)
  dfax sim, noisy   the simulator's default shot and read noise
  digital    ``dfax.projectors.shared`` (Gaussian, 1/sqrt(n) scale)
Writes the PNG (training loss, test accuracy in the legend) and a JSON of the runs.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import matplotlib
import numpy as np
import optax

matplotlib.use("Agg")
import matplotlib.pyplot as plt

import dfax
from dfax import opu
from dfax.data import infinite_batches, load_mnist
from dfax.models import MLP


def train(projector, ds, args, noise_base=None) -> dict:
  """One run; ``noise_base`` folds the step into the simulator's noise key."""
  model = MLP(features=tuple(args.features), num_classes=10)
  params = jax.jit(model.init)(jax.random.key(0), ds.x_train[:1])
  tx = optax.adam(args.lr)
  opt_state = tx.init(params)

  def loss_fn(p, x, y):
    return optax.softmax_cross_entropy_with_integer_labels(model.apply(p, x), y).mean()

  @jax.jit
  def step(params, opt_state, x, y, i):
    proj = projector(i) if noise_base is not None else projector
    loss, grads = dfax.dfa_value_and_grad(loss_fn, projector=proj)(params, x, y)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  accuracy = jax.jit(lambda p, x, y: (model.apply(p, x).argmax(-1) == y).sum())
  losses, start = [], time.perf_counter()
  batches = infinite_batches(ds.x_train, ds.y_train, 128, seed=0)
  for i in range(args.steps):
    x, y = next(batches)
    params, opt_state, loss = step(params, opt_state, x, y, i)
    losses.append(float(loss))
  seconds = time.perf_counter() - start
  correct = sum(int(accuracy(params, ds.x_test[s:s + 1000], ds.y_test[s:s + 1000]))
                for s in range(0, len(ds.x_test), 1000))
  return {"loss": losses, "test_accuracy": correct / len(ds.x_test), "seconds": seconds}


def parse(argv=None) -> argparse.Namespace:
  """The command line's arguments."""
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default="opu_lightonml_mnist.png")
  parser.add_argument("--steps", type=int, default=468)  # one epoch of batch 128
  parser.add_argument("--features", default="800,800")
  parser.add_argument("--bits", type=int, default=8)
  parser.add_argument("--threshold", type=float, default=1.0)
  parser.add_argument("--lr", type=float, default=1e-3)
  return parser.parse_args(argv)


def main(argv=None):
  args = parse(argv)
  args.features = [int(f) for f in args.features.split(",")]
  import lightonml

  ds = load_mnist()
  key = jax.random.key(0)
  config = opu.OPUConfig(noise=False, bits=args.bits, threshold=args.threshold)
  noisy = opu.OPUConfig(bits=args.bits, threshold=args.threshold)
  device = lightonml.OPU(n_components=8, max_n_features=8, simulated=True)
  runs = {
      "lightonml simulated OPU": (opu.make_lightonml_projector(device, config), None),
      "dfax simulator (same settings)": (opu.make_projector(config, key=key), None),
      "dfax simulator, shot + read noise": (
          lambda i: opu.make_projector(noisy, key=key,
                                       noise_key=jax.random.fold_in(jax.random.key(1), i)), 1),
      "digital (shared Gaussian)": (dfax.projectors.shared(key), None),
  }
  results = {}
  for name, (projector, noise_base) in runs.items():
    results[name] = train(projector, ds, args, noise_base)
    print(f"{name}: test accuracy {100 * results[name]['test_accuracy']:.2f}% "
          f"({results[name]['seconds']:.1f} s for {args.steps} steps)", flush=True)

  fig, ax = plt.subplots(figsize=(6.4, 4.0))
  for name, r in results.items():
    smooth = np.convolve(r["loss"], np.ones(20) / 20, mode="valid")
    ax.plot(smooth, label=f"{name}: {100 * r['test_accuracy']:.2f}%")
  ax.set(xlabel="step", ylabel="training loss (20-step mean)", yscale="log",
         title=f"DFA, MNIST MLP {args.features}, {args.steps} steps, {args.bits}-bit, "
               f"threshold {args.threshold}")
  ax.legend(title="projection: test accuracy", fontsize=8)
  fig.tight_layout()
  fig.savefig(args.out, dpi=110)
  meta = {"jax": jax.__version__, "lightonml": lightonml.__version__, "args": vars(args)}
  with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
    json.dump({"meta": meta, **{k: {**v, "loss": v["loss"][-20:]} for k, v in results.items()}},
              f, indent=2)
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
