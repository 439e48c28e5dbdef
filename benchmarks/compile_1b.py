"""Lower and compile a >=1B-parameter Transformer DFA train step ahead of time.

  python benchmarks/compile_1b.py [--method dfa|bp] [--preset macro|macro_out|micro|sublayer]
                                  [--norm pre|post]

Abstract shapes only (jax.ShapeDtypeStruct with shardings): nothing is
allocated. Prints the parameter count, compile time, collective counts and the
per-device memory XLA reports for the compiled executable.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

if "jax" not in sys.modules:
  os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import jax  # noqa: E402
import optax  # noqa: E402

import dfax  # noqa: E402
from dfax import parallel  # noqa: E402
from dfax.models import TransformerConfig, TransformerLM, lm_forward, presets  # noqa: E402
from dfax.models.transformer import NORMS  # noqa: E402
from dfax.train.config_file import load_config  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--method", choices=["dfa", "bp"], default="dfa")
  parser.add_argument("--preset", choices=presets.PRESETS, default="macro",
                      help="DFA feedback preset (dfax.models.presets)")
  parser.add_argument("--norm", choices=NORMS, default="pre",
                      help="LayerNorm placement (TransformerConfig.norm)")
  parser.add_argument("--config", default=os.path.join(HERE, "..", "configs", "lm_1b.py"))
  args = parser.parse_args(argv)
  c = load_config(args.config)
  model = TransformerLM(TransformerConfig(
      vocab_size=c.vocab_size, d_model=c.d_model, num_heads=c.num_heads,
      num_layers=c.num_layers, d_ff=c.d_ff, max_len=c.seq_len, remat=c.remat,
      dtype=jax.numpy.bfloat16, norm=args.norm))
  tokens = jax.ShapeDtypeStruct((c.batch_size, c.seq_len), jax.numpy.int32)
  params = jax.eval_shape(model.init, jax.random.key(0), tokens)
  n_params = sum(math.prod(p.shape) for p in jax.tree.leaves(params))
  opt = optax.adam(1e-4)
  opt_state = jax.eval_shape(opt.init, params)
  mesh = parallel.make_mesh(c.mesh.data, c.mesh.model)
  ps, os_ = parallel.shard_params(params, mesh), parallel.shard_params(opt_state, mesh)
  bs = parallel.batch_sharding(mesh)

  def loss_fn(p, x, y):
    return optax.softmax_cross_entropy_with_integer_labels(lm_forward(model, p, x), y).mean()

  grad = (dfax.dfa_value_and_grad(loss_fn, feedback=getattr(presets, args.preset)(model))
          if args.method == "dfa" else jax.value_and_grad(loss_fn))

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
  print(f"method={args.method} preset={args.preset} norm={args.norm} params={n_params / 1e9:.3f}B "
        f"mesh={c.mesh.data}x{c.mesh.model} ({jax.default_backend()}), "
        f"lower+compile {seconds:.1f} s")
  print(f"per device: arguments {gib(mem.argument_size_in_bytes):.2f} GiB, outputs "
        f"{gib(mem.output_size_in_bytes):.2f} GiB, temporaries {gib(mem.temp_size_in_bytes):.2f} GiB")
  print("collectives:", parallel.count_collectives(compiled.as_text()))


if __name__ == "__main__":
  main()
