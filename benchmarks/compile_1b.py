"""Lower and compile a >=1B-parameter Transformer DFA train step ahead of time.

  python benchmarks/compile_1b.py [--method dfa|bp] [--preset macro|macro_out|micro|sublayer|after_ln]
                                  [--norm pre|post] [--config configs/lm_1b.py] [--quick]

The config is on the trainer's schema (configs/lm_1b.py); the model is built
from ``config.model`` by its ``dfax.train.families`` record and applied, differentiated
and optimized through the trainer's own functions (``trainer.model_logits``,
``methods.value_and_grad``, ``optim.make_optimizer``), in bfloat16. The flags
override ``config.method``, ``config.dfa.feedback`` and ``config.model.norm``.

Abstract shapes only (jax.ShapeDtypeStruct with shardings): nothing is
allocated. Prints the parameter count, compile time, collective counts and the
per-device memory XLA reports for the compiled executable. The cheapest run is
the default (one lower+compile, about 5 s on two CPU cores). ``--quick`` shrinks
the config through the same overrides (d_model 16, 2 layers, sequence 8,
vocabulary 256) and runs the same lowering and compilation: it checks that the
benchmark runs, in a few seconds; its figures are not the 1B model's.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import os
import sys
import time

if "jax" not in sys.modules:
  os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

from dfax import parallel  # noqa: E402
from dfax.models import presets  # noqa: E402
from dfax.models.transformer import NORMS  # noqa: E402
from dfax.train import families, methods, optim, trainer, validate  # noqa: E402
from dfax.train.config_file import load_config  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG = os.path.join(HERE, "..", "configs", "lm_1b.py")
QUICK = {"model.d_model": 16, "model.num_heads": 2, "model.num_layers": 2, "model.d_ff": 32,
         "dataset.seq_len": 8}  # --quick: the same step on a tiny model
QUICK_VOCAB = 256


def build_model(config, vocab_size: int, dtype=jnp.bfloat16):
  """The model the trainer would build from ``config.model``, computing in ``dtype``."""
  model = families.get(config.model.name).build(config, vocab_size)
  return model.clone(config=dataclasses.replace(model.config, dtype=dtype))


def parse(argv=None) -> argparse.Namespace:
  """The command line's arguments."""
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--method", choices=["dfa", "bp"], default=None,
                      help="training method (default: the config's)")
  parser.add_argument("--preset", choices=list(presets.PRESETS), default=None,
                      help="DFA feedback preset, dfax.models.presets (default: the config's)")
  parser.add_argument("--norm", choices=NORMS, default=None,
                      help="LayerNorm placement, TransformerConfig.norm (default: the config's)")
  parser.add_argument("--config", default=CONFIG)
  parser.add_argument("--vocab-size", type=int, default=None,
                      help="vocabulary (default: the config file's VOCAB_SIZE; 256 with --quick)")
  parser.add_argument("--quick", action="store_true",
                      help="a tiny model through the same path: checks that it runs")
  parser.add_argument("--json", default=None, help="also write the figures here")
  return parser.parse_args(argv)


def main(argv=None):
  args = parse(argv)
  overrides = {k: v for k, v in (("method", args.method), ("dfa.feedback", args.preset),
                                 ("model.norm", args.norm)) if v is not None}
  c = load_config(args.config, **(QUICK if args.quick else {}), **overrides)
  validate.check_config(c)
  vocab = args.vocab_size or (QUICK_VOCAB if args.quick else _vocab_size(args.config))
  model = build_model(c, vocab)
  tokens = jax.ShapeDtypeStruct((c.batch_size, c.dataset.seq_len), jnp.int32)
  params = jax.eval_shape(model.init, jax.random.key(0), tokens)
  n_params = sum(math.prod(p.shape) for p in jax.tree.leaves(params))
  opt = methods.get(c.method).wrap_optimizer(optim.make_optimizer(c, c.num_steps))
  opt_state = jax.eval_shape(opt.init, params)
  mesh = parallel.make_mesh(c.mesh.data, c.mesh.model)
  ps, os_ = parallel.shard_params(params, mesh), parallel.shard_params(opt_state, mesh)
  bs = parallel.batch_sharding(mesh)

  def loss_fn(p, x, y):
    return methods.cross_entropy(trainer.model_logits(c, model, p, x), y)

  grad = methods.value_and_grad(c.method, loss_fn, c, model)

  def step(p, s, x, y):
    loss, g = grad(p, x, y)
    updates, s = opt.update(g, s, p)
    return optax.apply_updates(p, updates), s, loss

  abstract = lambda tree, shardings: jax.tree.map(
      lambda a, sh: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sh), tree, shardings)
  batch = jax.ShapeDtypeStruct(tokens.shape, tokens.dtype, sharding=bs)
  start = time.perf_counter()
  lowered = jax.jit(step, out_shardings=(ps, os_, None)).lower(
      abstract(params, ps), abstract(opt_state, os_), batch, batch)
  compiled = lowered.compile()
  seconds = time.perf_counter() - start
  mem = compiled.memory_analysis()
  gib = lambda b: b / 2 ** 30
  print(f"method={c.method} preset={c.dfa.feedback} norm={c.model.norm} "
        f"params={n_params / 1e9:.3f}B mesh={c.mesh.data}x{c.mesh.model} "
        f"({jax.default_backend()}), lower+compile {seconds:.1f} s"
        + (" [--quick: tiny model]" if args.quick else ""))
  print(f"per device: arguments {gib(mem.argument_size_in_bytes):.2f} GiB, outputs "
        f"{gib(mem.output_size_in_bytes):.2f} GiB, temporaries {gib(mem.temp_size_in_bytes):.2f} GiB")
  collectives = parallel.count_collectives(compiled.as_text())
  print("collectives:", collectives)
  if args.json:
    result = {"method": c.method, "preset": c.dfa.feedback, "norm": c.model.norm,
              "quick": args.quick, "params": n_params, "mesh": [c.mesh.data, c.mesh.model],
              "backend": jax.default_backend(), "lower_compile_s": seconds,
              "bytes_per_device": {"arguments": mem.argument_size_in_bytes,
                                   "outputs": mem.output_size_in_bytes,
                                   "temporaries": mem.temp_size_in_bytes},
              "collectives": dict(collectives)}
    with open(args.json, "w") as f:
      json.dump(result, f, indent=2)
  return compiled


def _vocab_size(path: str) -> int:
  spec = importlib.util.spec_from_file_location("dfax_lm_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, "VOCAB_SIZE"):
    raise SystemExit(f"compile_1b: {path} defines no VOCAB_SIZE; pass --vocab-size.")
  return module.VOCAB_SIZE


if __name__ == "__main__":
  main()
