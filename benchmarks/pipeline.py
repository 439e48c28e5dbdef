"""DFA vs backprop pipelines: compiled critical paths, bubble, memory, step time.

Usage (host devices; set before JAX starts):
  XLA_FLAGS=--xla_force_host_platform_device_count=8 python benchmarks/pipeline.py
  XLA_FLAGS=--xla_force_host_platform_device_count=8 python benchmarks/pipeline.py --quick
  python benchmarks/pipeline.py --json out.json --figures docs/figures

Three parts, all in one process:
1. ``table``: for S in {2, 4, 8} and several M, both pipelines are compiled and
   their HLO read by ``hlo_schedule.analyze (benchmarks/hlo_schedule.py)``: matmul FLOPs on the
   critical path, collective-permutes forward/backward and on that path, the
   bubble (1 - useful work / (S x critical path), useful work = the one-device
   step's FLOPs), and XLA's temporary memory per device.
2. ``timing``: step time of the DFA pipeline vs the backprop pipeline,
   interleaved rounds, medians of per-round ratios. On host devices all "stages" share the CPU cores, so this
   measures total work per step, not the overlap a real pipeline gets.
3. ``model_1b``: the step time of both schedules for the 1.14B config
   (configs/lm_1b.py) on 8 and 64 stages, from the per-block FLOPs of its
   compiled forward and backward and a stated device throughput and link
   bandwidth (``--tflops``, ``--link_gbps``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # configs/
from timing import interleaved_samples, median_ratio  # noqa: E402

import dfax  # noqa: E402
from dfax.parallel import feedback, make_pipeline_mesh, pipeline  # noqa: E402
import hlo_schedule as schedule  # noqa: E402
from dfax.models.stack import (StackConfig, StackedMLP, pipeline_parts, sum_cross_entropy,  # noqa: E402
                               to_pipeline)

KEY = jax.random.key(0)


def problem(stages: int, batch: int, d: int, blocks: int):
  config = StackConfig(d_in=d, d=d, d_ff=2 * d, n_out=16, num_stages=stages,
                       blocks_per_stage=blocks)
  model = StackedMLP(config)
  x = jax.random.normal(jax.random.key(1), (batch, d))
  y = jax.random.randint(jax.random.key(2), (batch,), 0, 16)
  params = jax.jit(model.init)(jax.random.key(3), x)
  return config, model, params, x, y


def pipelines(config, stages: int, data: int, micro: int) -> dict:
  parts, mesh = pipeline_parts(config), make_pipeline_mesh(stages, data)
  return {"dfa": pipeline.dfa_pipeline(parts, mesh, micro, feedback.keyed_dense(KEY)),
          "bp": pipeline.backprop_pipeline(parts, mesh, micro)}


def one_device_flops(model, params, x, y) -> dict:
  loss = lambda p, x, y: sum_cross_entropy(model.apply(p, x), y) / x.shape[0]
  dfa = dfax.dfa_grad(loss, projector=dfax.projectors.gaussian(KEY), feedback=dfax.FeedbackPoint)
  return {name: schedule.analyze(jax.jit(g).lower(params, x, y).compile().as_text()).total_flops
          for name, g in (("dfa", dfa), ("bp", jax.grad(loss)))}


def table(stage_list, micro_list, d: int, blocks: int, mb: int) -> list[dict]:
  rows = []
  for stages in stage_list:
    for micro in micro_list:
      config, model, params, x, y = problem(stages, micro * mb, d, blocks)
      useful = one_device_flops(model, params, x, y)
      for name, fn in pipelines(config, stages, 1, micro).items():
        compiled = fn.lower(to_pipeline(params), x, y).compile()
        s = schedule.analyze(compiled.as_text())
        mem = compiled.memory_analysis()
        work = useful[name]
        rows.append({
            "S": stages, "M": micro, "method": name, "critical_mflop": s.critical_flops / 1e6,
            "device_mflop": s.total_flops / 1e6, "useful_mflop": work / 1e6,
            "bubble": 1 - work / (stages * s.critical_flops),
            "gpipe_bubble_theory": (stages - 1) / (micro + stages - 1),
            "permutes_fwd": s.permutes["forward"], "permutes_bwd": s.permutes["backward"],
            "path_permutes": s.path_permutes, "path_all_reduces": s.path_reduces,
            "temp_kib": getattr(mem, "temp_size_in_bytes", 0) / 1024})
        r = rows[-1]
        print(f"S={stages} M={micro:2d} {name:8s} critical {r['critical_mflop']:8.2f} MFLOP  "
              f"bubble {r['bubble']:.3f} (GPipe theory {r['gpipe_bubble_theory']:.3f})  "
              f"ppermutes fwd/bwd {r['permutes_fwd']}/{r['permutes_bwd']} "
              f"(on path {r['path_permutes']})  temp {r['temp_kib']:.0f} KiB", flush=True)
  return rows


def timing(configs, d: int, blocks: int, mb: int, repeats: int) -> list[dict]:
  out = []
  for stages, data, micro in configs:
    config, _, params, x, y = problem(stages, data * micro * mb, d, blocks)
    p = to_pipeline(params)
    fns = {k: (lambda f=f: f(p, x, y)) for k, f in pipelines(config, stages, data, micro).items()}
    samples = interleaved_samples(fns, repeats=repeats)
    ms = {k: 1e3 * statistics.median(v) for k, v in samples.items()}
    row = {"S": stages, "data": data, "M": micro, "ms": ms,
           "dfa_over_bp": median_ratio(samples, "dfa", "bp")}
    out.append(row)
    print(f"S={stages} data={data} M={micro}: " + "  ".join(f"{k} {v:.2f} ms" for k, v in
                                                         ms.items()) +
          f"  DFA/BP {row['dfa_over_bp']:.3f}",
          flush=True)
  return out


def block_costs_1b(seq: int) -> dict:
  """Compiled FLOPs of one 1.14B-config block: forward, backprop backward, DFA backward."""
  from configs.lm_1b import VOCAB_SIZE, get_config  # noqa: PLC0415
  from dfax.models.transformer import Block, TransformerConfig  # noqa: PLC0415
  c = get_config()
  m = c.model
  tc = TransformerConfig(vocab_size=VOCAB_SIZE, d_model=m.d_model, num_heads=m.num_heads,
                         num_layers=1, d_ff=m.d_ff, max_len=c.dataset.seq_len, dtype=jnp.bfloat16)
  block = Block(tc)
  x = jax.ShapeDtypeStruct((1, seq, m.d_model), jnp.bfloat16)
  params = jax.eval_shape(block.init, jax.random.key(0), x)
  fwd = lambda p, x: block.apply(p, x)[0]
  bwd = lambda p, x, g: jax.vjp(fwd, p, x)[1](g)                  # backprop: dW and dx
  dfa_bwd = lambda p, x, g: jax.vjp(lambda q: fwd(q, x), p)[1](g)  # DFA: input cut, dW only
  flops = lambda f, *a: schedule.analyze(jax.jit(f).lower(*a).compile().as_text()).total_flops
  f = flops(fwd, params, x)  # a vjp runs the forward too: subtract it
  return {"fwd": f, "bwd": flops(bwd, params, x, x) - f,
          "dfa_bwd": flops(dfa_bwd, params, x, x) - f, "seq": seq, "d_model": m.d_model,
          "num_layers": m.num_layers, "act_bytes": 2 * seq * m.d_model}


def model_1b(costs: dict, tflops: float, link_gbps: float, stage_list=(8, 64),
             micro_list=(8, 32, 128)) -> list[dict]:
  """GPipe step time (seconds per step, one sequence per microbatch) for both methods."""
  rate, bw = tflops * 1e12, link_gbps * 1e9
  f = costs["fwd"] / rate
  b, b_dfa = costs["bwd"] / rate, costs["dfa_bwd"] / rate
  hop = costs["act_bytes"] / bw
  rows = []
  for stages in stage_list:
    per = costs["num_layers"] / stages  # blocks per stage (fractional at 64: an ideal split)
    for micro in micro_list:
      steps = micro + stages - 1
      bp = steps * per * (f + b) + 2 * (steps - 1) * hop
      # DFA: forward chain, one all-reduce of the error (hidden-state sized), projection
      # e -> B_s e (2 * seq * d^2 per microbatch), then M local backwards without a chain
      proj = micro * 2 * costs["seq"] * costs["d_model"] ** 2 / rate
      allreduce = 2 * micro * costs["act_bytes"] / bw
      dfa = steps * per * f + (steps - 1) * hop + allreduce + proj + micro * per * b_dfa
      ideal_bp = micro * per * (f + b)
      rows.append({"S": stages, "M": micro, "bp_s": bp, "dfa_s": dfa, "dfa_over_bp": dfa / bp,
                   "bp_bubble": 1 - ideal_bp / bp,
                   "dfa_bubble": 1 - micro * per * (f + b_dfa) / dfa})
      r = rows[-1]
      print(f"1.14B S={stages:2d} M={micro:3d}: BP {r['bp_s']:.3f} s (bubble {r['bp_bubble']:.2f})"
            f"  DFA {r['dfa_s']:.3f} s (bubble {r['dfa_bubble']:.2f})  DFA/BP "
            f"{r['dfa_over_bp']:.3f}", flush=True)
  return rows


def figures(rows: list[dict], model_rows: list[dict], out_dir: str) -> None:
  import matplotlib  # noqa: PLC0415
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # noqa: PLC0415
  fig, ax = plt.subplots(figsize=(6, 4))
  for i, stages in enumerate(sorted({r["S"] for r in rows})):
    for method, style in (("bp", "--"), ("dfa", "-")):
      pts = [(r["M"], r["bubble"]) for r in rows if r["S"] == stages and r["method"] == method]
      ax.plot(*zip(*pts), style, marker="o", color=f"C{i}", label=f"{method.upper()} S={stages}")
  ax.set_xscale("log", base=2)
  ax.set(xlabel="microbatches M", ylabel="bubble (idle fraction, compiled HLO)",
         title="Pipeline bubble: DFA (solid) vs backprop GPipe (dashed)")
  ax.legend(fontsize=7, ncol=2)
  fig.tight_layout()
  fig.savefig(os.path.join(out_dir, "pipeline_bubble.png"), dpi=120)
  if model_rows:
    fig, ax = plt.subplots(figsize=(6, 4))
    labels = [f"S={r['S']}\nM={r['M']}" for r in model_rows]
    xs = range(len(model_rows))
    ax.bar([x - 0.2 for x in xs], [r["bp_s"] for r in model_rows], 0.4, label="backprop GPipe")
    ax.bar([x + 0.2 for x in xs], [r["dfa_s"] for r in model_rows], 0.4, label="DFA pipeline")
    ax.set_xticks(list(xs), labels, fontsize=7)
    ax.set(ylabel="modelled step time (s)", title="1.14B config: modelled step time")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "pipeline_1b_model.png"), dpi=120)


def parse(argv=None) -> argparse.Namespace:
  """The command line's arguments."""
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true",
                      help="a small run that checks it all works (table: S=2, M=4 only; "
                           "timing: S=2, M=4, 3 rounds; 1.14B block at sequence 128)")
  parser.add_argument("--repeats", type=int, default=15)
  parser.add_argument("--tflops", type=float, default=400.0,
                      help="sustained device throughput assumed by the 1.14B model")
  parser.add_argument("--link_gbps", type=float, default=100.0,
                      help="stage-to-stage bandwidth (GB/s) assumed by the 1.14B model")
  parser.add_argument("--skip", default="", help="comma list of parts to skip: table,timing,1b")
  parser.add_argument("--json", default=None)
  parser.add_argument("--figures", default=None, help="write pipeline_*.png here")
  return parser.parse_args(argv)


def main(argv=None):
  args = parse(argv)
  skip = set(filter(None, args.skip.split(",")))
  n = jax.device_count()
  stage_list = [s for s in ((2,) if args.quick else (2, 4, 8)) if s <= n]
  micro_list = (4,) if args.quick else (1, 2, 4, 8, 16)
  result = {"backend": jax.default_backend(), "devices": n, "jax": jax.__version__,
            "device_kind": jax.devices()[0].device_kind}
  if "table" not in skip:
    result["table"] = table(stage_list, micro_list, d=32, blocks=2, mb=4)
  if "timing" not in skip:
    d, mb = (64, 8) if args.quick else (256, 32)
    configs = [c for c in ([(2, 1, 4)] if args.quick else [(4, 2, 4), (4, 2, 8), (8, 1, 8)])
               if c[0] * c[1] <= n]
    result["timing"] = timing(configs, d=d, blocks=2, mb=mb,
                              repeats=3 if args.quick else args.repeats)
  if "1b" not in skip:
    result["block_1b"] = block_costs_1b(128 if args.quick else 1024)
    result["model_1b"] = model_1b(result["block_1b"], args.tflops, args.link_gbps)
  if args.figures and "table" in result:
    figures(result["table"], result.get("model_1b", []), args.figures)
  if args.json:
    with open(args.json, "w") as f:
      json.dump(result, f, indent=2)
  return result


if __name__ == "__main__":
  main()
