"""DFA vs backprop vs forward-only step time, in one process, interleaved, medians.

Usage:
  python benchmarks/step_time.py                 # 4x1024 tanh MLP at batch 512
  python benchmarks/step_time.py --model transformer                     # macro preset
  python benchmarks/step_time.py --model transformer --preset sublayer
  python benchmarks/step_time.py --model transformer --preset macro_out --norm post
  python benchmarks/step_time.py --repeats 50 --json out.json
  python benchmarks/step_time.py --quick [--model transformer]   # small sizes, seconds on a CPU

A "step" is the jitted gradient computation plus an Adam update, the part of
a training step that differs between methods. Ratios are medians of per-round
ratios (each round runs every candidate once, in shuffled order). DFA runs with the dense
Gaussian projector (the default) and with the randomized Hadamard one; the
printed DFA/BP ratios are the figures recorded in the README. ``--quick``
runs the same steps on a 4x64 MLP (or a 2-layer, d=32 LM) with 3 rounds:
it checks that the benchmark runs; its ratios are not figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

sys.path.insert(0, os.path.dirname(__file__))
import statistics  # noqa: E402

from timing import interleaved_samples, median_ratio  # noqa: E402

import dfax  # noqa: E402
from dfax.models import lm_forward, presets  # noqa: E402
from dfax.models.transformer import NORMS, TransformerLM  # noqa: E402


class TanhMLP(nn.Module):
  depth: int = 4
  width: int = 1024
  num_classes: int = 10

  @nn.compact
  def __call__(self, x):
    for _ in range(self.depth):
      x = nn.tanh(nn.Dense(self.width)(x))
    return nn.Dense(self.num_classes)(x)


def mlp_setup(batch: int, width: int = 1024):
  model = TanhMLP(width=width)
  x = jax.random.normal(jax.random.key(0), (batch, 784))
  y = jax.random.randint(jax.random.key(1), (batch,), 0, 10)
  return model, model.init(jax.random.key(2), x), x, y, None


def handwritten_mlp_dfa(params, x, y):
  """Nøkland's DFA gradient for ``TanhMLP`` written out by hand: the floor dfax should reach.

  Returns ``(loss, grads)`` like ``jax.value_and_grad``; one fixed Gaussian
  matrix per hidden layer, drawn from a constant key on every call, as dfax's
  projector does.
  """
  layers = params["params"]
  names = sorted(layers, key=lambda n: int(n.split("_")[1]))
  feedback = [jax.random.normal(jax.random.key(i), (10, layers[n]["kernel"].shape[1])) / 10 ** 0.5
              for i, n in enumerate(names[:-1])]
  hidden = [x]
  for n in names[:-1]:
    hidden.append(jnp.tanh(hidden[-1] @ layers[n]["kernel"] + layers[n]["bias"]))
  logits = hidden[-1] @ layers[names[-1]]["kernel"] + layers[names[-1]]["bias"]
  ce = lambda z: optax.softmax_cross_entropy_with_integer_labels(z, y).mean()
  loss, e = jax.value_and_grad(ce)(logits)
  grads = {names[-1]: {"kernel": hidden[-1].T @ e, "bias": e.sum(0)}}
  for i, n in enumerate(names[:-1]):
    delta = (e @ feedback[i]) * (1 - hidden[i + 1] ** 2)
    grads[n] = {"kernel": hidden[i].T @ delta, "bias": delta.sum(0)}
  return loss, {"params": grads}


def transformer_setup(batch: int, preset: str = "macro", norm: str = "pre", quick: bool = False):
  from dfax.models.transformer import TransformerConfig  # noqa: PLC0415
  d, layers, seq = (32, 2, 16) if quick else (256, 4, 128)
  cfg = TransformerConfig(vocab_size=96, d_model=d, num_heads=4, num_layers=layers, d_ff=4 * d,
                          max_len=seq, norm=norm)
  model = TransformerLM(cfg)
  tokens = jax.random.randint(jax.random.key(0), (batch, seq + 1), 0, 96)
  x, y = tokens[:, :-1], tokens[:, 1:]
  return model, model.init(jax.random.key(2), x), x, y, getattr(presets, preset)(model)


def logits_of(model, params, x):
  """The logits as the trainer computes them: ``lm_forward`` for the LM, ``apply`` otherwise."""
  if isinstance(model, TransformerLM):
    return lm_forward(model, params, x)  # DFA error where config.error_at says (default: hidden)
  return model.apply(params, x)


def make_steps(model, params, x, y, feedback):
  def loss_fn(p, x, y):
    logits = logits_of(model, p, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  opt = optax.adam(1e-3)
  opt_state = opt.init(params)

  def step_with(value_and_grad):
    @jax.jit
    def step(p, s, x, y):
      loss, g = value_and_grad(loss_fn)(p, x, y)
      updates, s = opt.update(g, s, p)
      return optax.apply_updates(p, updates), s, loss
    return lambda: step(params, opt_state, x, y)

  def grad_only(value_and_grad):
    fn = jax.jit(value_and_grad(loss_fn))
    return lambda: fn(params, x, y)

  forward = jax.jit(loss_fn)  # forward pass and loss only
  key = jax.random.key(0)
  handwritten = jax.jit(handwritten_mlp_dfa)
  dfa_with = lambda projector: lambda f: dfax.dfa_value_and_grad(f, feedback=feedback,
                                                                 projector=projector)
  extra = ({"handwritten_dfa_grad": lambda: handwritten(params, x, y)}
           if isinstance(model, TanhMLP) else {})
  return extra | {
      "forward": lambda: forward(params, x, y),
      "bp": step_with(jax.value_and_grad),
      "dfa": step_with(dfa_with(dfax.projectors.gaussian(key))),
      "dfa_hadamard": step_with(dfa_with(dfax.projectors.hadamard(key))),
      "bp_grad": grad_only(jax.value_and_grad),  # the gradient alone, no optimizer
      "dfa_grad": grad_only(dfa_with(dfax.projectors.gaussian(key))),
  }


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", choices=["mlp", "transformer"], default="mlp")
  parser.add_argument("--batch", type=int, default=None)
  parser.add_argument("--preset", choices=presets.PRESETS, default="macro",
                      help="Transformer feedback preset (dfax.models.presets)")
  parser.add_argument("--norm", choices=NORMS, default="pre",
                      help="Transformer LayerNorm placement (TransformerConfig.norm)")
  parser.add_argument("--repeats", type=int, default=None, help="timed rounds (default 30; 3 "
                      "with --quick)")
  parser.add_argument("--quick", action="store_true",
                      help="small model and batch, 3 rounds: checks that it runs (no figures)")
  parser.add_argument("--json", default=None, help="also write the figures here")
  args = parser.parse_args(argv)
  args.repeats = args.repeats or (3 if args.quick else 30)
  if args.model == "mlp":
    batch = args.batch or (16 if args.quick else 512)
    parts = mlp_setup(batch, width=64 if args.quick else 1024)
  else:
    batch = args.batch or (2 if args.quick else 16)
    parts = transformer_setup(batch, args.preset, args.norm, quick=args.quick)
  steps = make_steps(*parts)
  samples = interleaved_samples(steps, repeats=args.repeats)
  t = {name: statistics.median(s) for name, s in samples.items()}
  result = {
      "model": args.model, "batch": batch, "quick": args.quick, "backend": jax.default_backend(),
      "device": str(jax.devices()[0].device_kind), "ms": {k: 1e3 * v for k, v in t.items()},
      "dfa_over_bp": median_ratio(samples, "dfa", "bp"),
      "dfa_hadamard_over_bp": median_ratio(samples, "dfa_hadamard", "bp"),
      "dfa_over_bp_gradient_only": median_ratio(samples, "dfa_grad", "bp_grad"),
      "dfa_over_forward": median_ratio(samples, "dfa", "forward"),
      "bp_over_forward": median_ratio(samples, "bp", "forward"),
  }
  if "handwritten_dfa_grad" in samples:
    result["handwritten_dfa_over_bp_gradient_only"] = median_ratio(
        samples, "handwritten_dfa_grad", "bp_grad")
  for name, ms in result["ms"].items():
    print(f"{name:>20}: {ms:8.2f} ms (median of {args.repeats}, interleaved)")
  print(f"DFA/BP = {result['dfa_over_bp']:.3f} (Gaussian projector), "
        f"{result['dfa_hadamard_over_bp']:.3f} (Hadamard projector); gradient alone, "
        f"without the Adam update: {result['dfa_over_bp_gradient_only']:.3f}")
  if "handwritten_dfa_over_bp_gradient_only" in result:
    print(f"hand-written DFA gradient / BP gradient = "
          f"{result['handwritten_dfa_over_bp_gradient_only']:.3f} (the floor for dfax's "
          f"{result['dfa_over_bp_gradient_only']:.3f})")
  print(f"DFA/forward = {result['dfa_over_forward']:.2f}"
        f"   BP/forward = {result['bp_over_forward']:.2f}   [{args.model}, batch {batch}, "
        f"{result['backend']}]")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(result, f, indent=2)
  return result


if __name__ == "__main__":
  main()
