"""DFA vs backprop vs forward-only step time, in one process, interleaved, medians.

Usage:
  python benchmarks/step_time.py                 # 4x1024 tanh MLP at batch 512
  python benchmarks/step_time.py --model transformer                     # macro preset
  python benchmarks/step_time.py --model transformer --preset sublayer
  python benchmarks/step_time.py --model transformer --preset macro_out --norm post
  python benchmarks/step_time.py --repeats 50 --json out.json
  python benchmarks/step_time.py --quick [--model transformer]   # small sizes, seconds on a CPU
  python benchmarks/step_time.py --model transformer --preset after_ln --d-model 128 --repeats 15

A "step" is the jitted gradient computation plus an Adam update, the part of
a training step that differs between methods. Ratios are medians of per-round
ratios (each round runs every candidate once, in shuffled order). DFA runs with the dense
Gaussian projector (the default) and with the randomized Hadamard one; the
printed DFA/BP ratios are the figures recorded in the README. ``--quick``
runs the same steps on a 4x64 MLP (or a 2-layer, d=32 LM) with 3 rounds:
it checks that the benchmark runs; its ratios are not figures.

The floor. For the MLP and for the two Transformer layouts that train
(``--preset after_ln`` on pre-LN blocks, ``--preset macro_out --norm post``)
the DFA gradient is also written out by hand (``handwritten_mlp_dfa`` here,
``handwritten_lm.handwritten_lm_dfa``): each segment between cuts differentiated with its own
``jax.vjp``, a cut segment with respect to its parameters only, so that no
cotangent DFA discards is ever computed. It is timed in the same rounds, and
``dfax DFA / hand-written`` is printed: 1.00 means the transform is at the
floor. For the Transformer the analytic floor is printed beside the measured
ratios: the matmul FLOPs of the DFA and backprop gradients (``lm_flops.lm_flops``).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

sys.path.insert(0, os.path.dirname(__file__))
import statistics  # noqa: E402

from handwritten_lm import HANDWRITTEN_LAYOUTS, handwritten_lm_dfa  # noqa: E402
from lm_flops import lm_flops  # noqa: E402
from timing import interleaved_samples, median_ratio  # noqa: E402

import dfax  # noqa: E402
from dfax.models import lm_forward, presets  # noqa: E402
from dfax.models.transformer import ERROR_AT, NORMS, TransformerConfig, TransformerLM  # noqa: E402


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


def transformer_setup(batch: int, preset: str = "macro", norm: str = "pre", quick: bool = False,
                      d_model: int | None = None, num_layers: int | None = None,
                      seq: int | None = None, error_at: str = "hidden", scan_unroll: int = 1):
  d, layers, length = (32, 2, 16) if quick else (256, 4, 128)
  d, layers, length = d_model or d, num_layers or layers, seq or length
  cfg = TransformerConfig(vocab_size=96, d_model=d, num_heads=4, num_layers=layers, d_ff=4 * d,
                          max_len=length, norm=norm, error_at=error_at,
                          scan_unroll=scan_unroll)
  model = TransformerLM(cfg)
  tokens = jax.random.randint(jax.random.key(0), (batch, length + 1), 0, 96)
  x, y = tokens[:, :-1], tokens[:, 1:]
  return model, model.init(jax.random.key(2), x), x, y, presets.PRESETS[preset]()


def logits_of(model, params, x):
  """The logits as the trainer computes them: ``lm_forward`` for the LM, ``apply`` otherwise."""
  if isinstance(model, TransformerLM):
    return lm_forward(model, params, x)  # DFA error where config.error_at says (default: hidden)
  return model.apply(params, x)


def _loss_of(model):
  def loss_fn(p, x, y):
    logits = logits_of(model, p, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
  return loss_fn


PROJECTOR_SEED = 0  # one key for every projector here: dfax's and the hand-written LM's


def gradient_fns(model, feedback, preset: str | None = None) -> dict:
  """The jitted gradients alone, ``fn(params, x, y) -> (loss, grads)``, by name.

  ``bp_grad`` (backprop), ``dfa_grad`` (dfax, Gaussian projector) and, for a
  model and layout written by hand, ``handwritten_dfa_grad``: the MLP's with
  its own matrices, the LM's with dfax's projector.
  """
  loss_fn = _loss_of(model)
  projector = dfax.projectors.gaussian(jax.random.key(PROJECTOR_SEED))
  fns = {"bp_grad": jax.jit(jax.value_and_grad(loss_fn)),
         "dfa_grad": jax.jit(dfax.dfa_value_and_grad(loss_fn, feedback=feedback,
                                                     projector=projector))}
  if isinstance(model, TanhMLP):
    fns["handwritten_dfa_grad"] = jax.jit(handwritten_mlp_dfa)
  elif (preset, model.config.norm) in HANDWRITTEN_LAYOUTS:
    fns["handwritten_dfa_grad"] = jax.jit(handwritten_lm_dfa(model.config, preset, projector))
  return fns


def compiled_dots(fn, *args) -> int:
  """The dot operations in ``fn``'s compiled program (XLA's optimised HLO).

  A loop body counts once, so only a fully unrolled stack (``scan_unroll`` >=
  the number of layers) shows every layer's dots; XLA's dead-code elimination
  has run, so a cotangent that is computed and then dropped is gone only where
  XLA could see that it is dropped. A ``jax.jit`` function is lowered as it is,
  so one already called with these arguments is not compiled again; a new one
  (as ``gradient_fns`` returns) is compiled afresh.

  Examples:
    >>> import jax.numpy as jnp
    >>> compiled_dots(lambda a, b: (a @ b) @ b, jnp.ones((2, 2)), jnp.ones((2, 2)))
    2
  """
  jitted = fn if hasattr(fn, "lower") else jax.jit(fn)
  return len(re.findall(r"\bdot\(", jitted.lower(*args).compile().as_text()))


def make_steps(model, params, x, y, feedback, preset: str | None = None):
  loss_fn = _loss_of(model)
  gradients = gradient_fns(model, feedback, preset)
  opt = optax.adam(1e-3)
  opt_state = opt.init(params)

  def step_with(value_and_grad):
    @jax.jit
    def step(p, s, x, y):
      loss, g = value_and_grad(loss_fn)(p, x, y)
      updates, s = opt.update(g, s, p)
      return optax.apply_updates(p, updates), s, loss
    return lambda: step(params, opt_state, x, y)

  forward = jax.jit(loss_fn)  # forward pass and loss only
  key = jax.random.key(PROJECTOR_SEED)
  dfa_with = lambda projector: lambda f: dfax.dfa_value_and_grad(f, feedback=feedback,
                                                                 projector=projector)
  # the gradients alone, no optimizer: bp_grad, dfa_grad and handwritten_dfa_grad if written
  alone = {name: functools.partial(fn, params, x, y) for name, fn in gradients.items()}
  return alone | {
      "forward": lambda: forward(params, x, y),
      "bp": step_with(jax.value_and_grad),
      "dfa": step_with(dfa_with(dfax.projectors.gaussian(key))),
      "dfa_hadamard": step_with(dfa_with(dfax.projectors.hadamard(key))),
  }


def parse(argv=None) -> argparse.Namespace:
  """The command line's arguments."""
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", choices=["mlp", "transformer"], default="mlp")
  parser.add_argument("--batch", type=int, default=None)
  parser.add_argument("--preset", choices=list(presets.PRESETS), default="macro",
                      help="Transformer feedback preset (dfax.models.presets)")
  parser.add_argument("--norm", choices=NORMS, default="pre",
                      help="Transformer LayerNorm placement (TransformerConfig.norm)")
  parser.add_argument("--error-at", choices=ERROR_AT, default="hidden",
                      help="Transformer: where DFA's error is taken (TransformerConfig.error_at)")
  parser.add_argument("--d-model", type=int, default=None, help="Transformer width (default "
                      "256; 32 with --quick); d_ff is 4x")
  parser.add_argument("--layers", type=int, default=None, help="Transformer depth (default 4; "
                      "2 with --quick)")
  parser.add_argument("--seq", type=int, default=None, help="Transformer sequence length "
                      "(default 128; 16 with --quick)")
  parser.add_argument("--scan-unroll", type=int, default=1, help="Transformer: blocks per "
                      "iteration of the layer loop (TransformerConfig.scan_unroll; >= --layers "
                      "unrolls it, and the compiled dot counts then cover every layer)")
  parser.add_argument("--repeats", type=int, default=None, help="timed rounds (default 30; 3 "
                      "with --quick)")
  parser.add_argument("--quick", action="store_true",
                      help="small model and batch, 3 rounds: checks that it runs (no figures)")
  parser.add_argument("--json", default=None, help="also write the figures here")
  return parser.parse_args(argv)


def main(argv=None):
  args = parse(argv)
  args.repeats = args.repeats or (3 if args.quick else 30)
  if args.model == "mlp":
    batch = args.batch or (16 if args.quick else 512)
    parts = mlp_setup(batch, width=64 if args.quick else 1024)
  else:
    batch = args.batch or (2 if args.quick else 16)
    parts = transformer_setup(batch, args.preset, args.norm, quick=args.quick,
                              d_model=args.d_model, num_layers=args.layers, seq=args.seq,
                              error_at=args.error_at, scan_unroll=args.scan_unroll)
  steps = make_steps(*parts, preset=args.preset if args.model == "transformer" else None)
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
    result["dfa_over_handwritten_gradient_only"] = median_ratio(
        samples, "dfa_grad", "handwritten_dfa_grad")
  if args.model == "transformer":
    model, _, x = parts[:3]
    result |= {"preset": args.preset, "norm": args.norm, "error_at": args.error_at,
               "d_model": model.config.d_model, "layers": model.config.num_layers,
               "seq": x.shape[1], "scan_unroll": model.config.scan_unroll}
    params, y = parts[1], parts[3]
    result["compiled_dots"], result["compile_seconds"] = {}, {}
    for name, fn in gradient_fns(model, parts[4], args.preset).items():  # fresh: no cache
      start = time.perf_counter()
      result["compiled_dots"][name] = compiled_dots(fn, params, x, y)
      result["compile_seconds"][name] = time.perf_counter() - start  # trace, lower, compile
    if (args.preset, args.norm) in HANDWRITTEN_LAYOUTS:
      result["analytic_flops"] = lm_flops(model.config, batch, x.shape[1], args.preset)
  for name, ms in result["ms"].items():
    print(f"{name:>20}: {ms:8.2f} ms (median of {args.repeats}, interleaved)")
  print(f"DFA/BP = {result['dfa_over_bp']:.3f} (Gaussian projector), "
        f"{result['dfa_hadamard_over_bp']:.3f} (Hadamard projector); gradient alone, "
        f"without the Adam update: {result['dfa_over_bp_gradient_only']:.3f}")
  if "handwritten_dfa_over_bp_gradient_only" in result:
    print(f"hand-written DFA gradient / BP gradient = "
          f"{result['handwritten_dfa_over_bp_gradient_only']:.3f} (the floor for dfax's "
          f"{result['dfa_over_bp_gradient_only']:.3f})")
    print(f"dfax DFA gradient / hand-written DFA gradient = "
          f"{result['dfa_over_handwritten_gradient_only']:.3f} (1.000: at the floor)")
  if "compiled_dots" in result:
    unrolled = result["scan_unroll"] >= result["layers"]
    print("dot operations in the compiled gradients ("
          + ("unrolled: every layer" if unrolled else "each loop body counted once") + "): "
          + ", ".join(f"{k} {v}" for k, v in result["compiled_dots"].items()))
    print("trace + lower + compile: " + ", ".join(
        f"{k} {v:.1f} s" for k, v in result["compile_seconds"].items()))
  if "analytic_flops" in result:
    f = result["analytic_flops"]
    print(f"analytic floor, matmul FLOPs: DFA/BP gradient = {f['dfa_over_bp_gradient']:.3f} "
          f"(backward alone {f['dfa_over_bp_backward']:.3f}; forward {f['forward'] / 1e9:.3g}, "
          f"BP backward {f['bp_backward'] / 1e9:.3g}, DFA backward {f['dfa_backward'] / 1e9:.3g} "
          f"GFLOP incl. projections {f['projections'] / 1e9:.3g})")
  print(f"DFA/forward = {result['dfa_over_forward']:.2f}"
        f"   BP/forward = {result['bp_over_forward']:.2f}   [{args.model}, batch {batch}, "
        f"{result['backend']}]")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(result, f, indent=2)
  return result


if __name__ == "__main__":
  main()
