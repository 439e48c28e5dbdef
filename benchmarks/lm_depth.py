"""DFA at depth: the Transformer LM at several depths, DFA against two controls and backprop.

Every row of one depth starts from the same initialisation and sees the same
batches. The rows:

* ``dfa``: the chosen preset (default ``after_ln``, pre-LN blocks) with the
  chosen projector (default ``gaussian``);
* ``zero``: the same cuts with zero feedback (``dfax.projectors.zeros()``):
  only what follows the last cut learns (the head);
* ``last_block``: cuts in front of every block with zero feedback (the
  ``macro`` preset): the last block and the head train by backprop, the rest
  stays frozen, the stronger control;
* ``bp``: backprop, at its own learning rate, warm-up and residual
  initialisation where ``--bp_lr``, ``--bp_warmup``, ``--bp_residual_init``
  say (the strongest backprop: post-LN blocks need the depth-scaled
  initialisation to train at depth);
* ``hybrid_K`` (``--bp_blocks K,...``): the hybrid method, the last K blocks
  and the head by exact backprop, the rest by DFA with the ``dfa`` row's cuts
  and projector (``TransformerConfig.bp_blocks``, ``--config.dfa.bp_blocks``
  in the CLI). Each hybrid row also prints the share of backprop's backward
  matmul FLOPs it still computes by backprop (``digital``): what an optical
  device would not take over.

It prints, per depth, the validation loss of each row, the gap closure
``(zero - dfa) / (zero - bp)`` and DFA's lead over the last-block control, with
the wall-clock time of each row's steps after the first (which compiles), and
writes them as JSON with ``--json``.

  python benchmarks/lm_depth.py --depths 2,4,8 --steps 3000 --norm post --preset macro_out \
      --lr 5e-3 --warmup 600 --bp_lr 3e-3 --bp_warmup 100 --bp_residual_init depth
                                       # the CPU proxy at the depth table's settings
  python benchmarks/lm_depth.py --depths 12 --d_model 768 --heads 12 --d_ff 3072 \\
      --seq 256 --batch 32 --steps 2500 --dtype bfloat16             # GPT-2-small width, GPU
  python benchmarks/lm_depth.py --quick                              # seconds: checks it runs

``--levers a,b`` adds one ``dfa:<lever>`` row per lever of ``LEVERS``: the
``dfa`` row with that lever's settings changed, from the same initialisation
and batches, with its gap closure against the same controls (the ablation
study of the depth page)::

  python benchmarks/lm_depth.py --depths 8 --levers lr_3e-3,macro,shared

``a+b`` is one row with both levers' settings (``--levers post_ln+reuse``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

import dfax
from dfax.data import load_shakespeare, sample_lm_batches
from dfax.models import TransformerConfig, TransformerLM, lm_forward, presets
from dfax.models.transformer import RESIDUAL_INITS

sys.path.insert(0, os.path.dirname(__file__))
from depth_levers import LEVERS, through_opu, with_lever  # noqa: E402
from depth_plots import plot_depths, plot_hybrid_curve, plot_levers  # noqa: E402
from depth_report import (across_seeds, merge, merged_against_baseline,  # noqa: E402
                          print_baseline, print_seeds, print_summary, row_settings,
                          summarise)
from lm_flops import backward_share  # noqa: E402

ROWS = ("dfa", "zero", "last_block", "bp")
PROJECTORS = ("gaussian", "uniform", "shared", "hadamard", "opu")


def parse(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--depths", default="2,4,8", help="comma-separated numbers of blocks")
  p.add_argument("--steps", type=int, default=3000)
  p.add_argument("--d_model", type=int, default=128)
  p.add_argument("--heads", type=int, default=4)
  p.add_argument("--d_ff", type=int, default=512)
  p.add_argument("--seq", type=int, default=128)
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--lr", type=float, default=1e-3, help="AdamW peak learning rate")
  p.add_argument("--warmup", type=int, default=100)
  p.add_argument("--b2", type=float, default=0.999, help="AdamW b2")
  p.add_argument("--layer_lr_decay", type=float, default=1.0,
                 help="block l of L learns at decay^(L-1-l) times the learning rate (the head, "
                      "embeddings and final LayerNorm at 1)")
  p.add_argument("--scale", default="error",
                 help="feedback entry scale: 'error' (1/sqrt(n_out)), 'point' or a number")
  p.add_argument("--tie_copies", action="store_true",
                 help="the layers of the scan share one feedback matrix per point")
  p.add_argument("--reuse", action="store_true",
                 help="shared projector: every point takes the first columns (TinyDFA)")
  p.add_argument("--feedback_norm", choices=("none", "rms"), default="none",
                 help="'rms': each point's feedback rescaled to unit RMS per token")
  p.add_argument("--residual_init", choices=RESIDUAL_INITS, default="default",
                 help="TransformerConfig.residual_init; 'depth': the kernels that write into "
                      "the residual stream scaled 1/sqrt(2L) (GPT-2)")
  p.add_argument("--norm", choices=("pre", "post"), default="pre")
  p.add_argument("--bp_lr", type=float, default=None,
                 help="the bp row's own AdamW peak learning rate (default: --lr), so backprop "
                      "trains at its best settings beside the DFA rows")
  p.add_argument("--bp_warmup", type=int, default=None,
                 help="the bp row's own warm-up steps (default: --warmup)")
  p.add_argument("--bp_residual_init", choices=RESIDUAL_INITS, default=None,
                 help="the bp row's own residual initialisation (default: --residual_init), "
                      "from the same initial parameters")
  p.add_argument("--error_at", choices=("logits", "hidden"), default="logits",
                 help="where DFA's error is taken (TransformerConfig.error_at). With 'hidden' "
                      "on pre-LN blocks the error is dL/dh at the raw residual stream, which no "
                      "cut interrupts, so every block also gets an exact gradient along it: "
                      "'logits' keeps the rows pure DFA")
  p.add_argument("--preset", default="after_ln", choices=presets.PRESETS)
  p.add_argument("--projector", default="gaussian", choices=PROJECTORS)
  p.add_argument("--opu_topk", type=float, default=None,
                 help="--projector opu: ternarise keeping this fraction of each error row")
  p.add_argument("--opu_input_bits", type=int, default=None,
                 help="--projector opu: send sign-separated bit planes of this many bits")
  p.add_argument("--opu_anchor_keep", type=float, default=1.0,
                 help="--projector opu: the fraction of camera pixels used, the strongest anchor")
  p.add_argument("--opu_ternarize", default=True, action=argparse.BooleanOptionalAction,
                 help="--projector opu: ternarise the error (the device's binary input)")
  p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
  p.add_argument("--unroll", action="store_true",
                 help="compile every stack unrolled (TransformerConfig.scan_unroll = depth): "
                 "the same rows, faster steps on a CPU, longer compiles; they round "
                 "differently from rolled runs")
  p.add_argument("--rows", default=",".join(ROWS), help="which of " + ",".join(ROWS))
  p.add_argument("--bp_blocks", default="", help="comma-separated K: add a hybrid_K row each")
  p.add_argument("--levers", default="",
                 help="comma-separated levers, a dfa:<lever> row each (a+b: one row with both): "
                 + ", ".join(f"{name} ({lever.what})" for name, lever in LEVERS.items())
                 .replace("%", "%%"))
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--eval_batches", type=int, default=16)
  p.add_argument("--json", help="write the results here")
  p.add_argument("--plot", help="draw the validation loss against K (the hybrid curve) here, "
                                "one line per depth, from the dfa (K=0), hybrid_K and bp rows "
                                "(with --seeds: their means, the sample std as error bars)")
  p.add_argument("--plot_levers", help="draw each lever's gap closure (a bar per lever) here")
  p.add_argument("--plot_depths", help="with --seeds: draw each row's val loss against depth "
                                       "(mean ± sample std over the seeds) here")
  reports = p.add_mutually_exclusive_group()
  reports.add_argument("--merge", nargs="+", metavar="JSON",
                       help="train nothing: merge the rows of these --json files (runs of the "
                            "same sizes, seed and settings, e.g. rows run in separate "
                            "processes), print the table and closures, and draw "
                            "--plot/--plot_levers")
  reports.add_argument("--seeds", nargs="+", metavar="JSON",
                       help="train nothing: each row's val loss and each closure over seeds "
                            "(mean, sample std) from these --json files, those of one seed "
                            "merged first; --json writes it")
  p.add_argument("--baseline", nargs="+", metavar="JSON",
                 help="with --seeds or --merge: each seed's bp row from these --json files "
                      "instead (backprop at its own settings, e.g. another norm, learning rate "
                      "or initialisation; the same sizes and steps), so every closure, and "
                      "--plot's K=depth point, is against it")
  p.add_argument("--quick", action="store_true", help="tiny sizes, a few steps (tests)")
  args = p.parse_args(argv)
  if args.plot_depths and not args.seeds:
    p.error("--plot_depths goes with --seeds (it draws the rows' spread over seeds)")
  if args.seeds and args.plot_levers:
    p.error("--plot_levers draws one seed's rows: give it with --merge (--plot and "
            "--plot_depths draw the spread over --seeds)")
  if args.baseline and not (args.seeds or args.merge):
    p.error("--baseline goes with --seeds or --merge (it replaces their bp rows)")
  if args.quick:
    args.depths, args.steps, args.d_model, args.heads, args.d_ff = "2", 3, 16, 2, 32
    args.seq, args.batch, args.eval_batches, args.warmup = 16, 4, 2, 2
    if "dfa" in args.rows.split(","):  # the hybrid goes with DFA rows
      args.bp_blocks = args.bp_blocks or "1"
  return args


def feedback(row: str, preset: str, model):
  """The selection a row trains with (None for backprop)."""
  if row == "bp":
    return None
  return presets.macro() if row == "last_block" else presets.PRESETS[preset]()


def projector(row: str, args: argparse.Namespace):
  """The row's projector: zero feedback for the controls, else ``args.projector``."""
  if row in ("zero", "last_block"):
    return dfax.projectors.zeros()
  key = jax.random.key(1000 + args.seed)
  if args.reuse and args.projector != "shared":
    raise SystemExit("lm_depth.py: --reuse needs --projector shared")
  if args.projector == "opu":
    device = dfax.opu.OPUConfig(ternarize=args.opu_ternarize, topk=args.opu_topk,
                                input_bits=args.opu_input_bits,
                                anchor_keep=args.opu_anchor_keep)
    proj = dfax.opu.make_projector(device, key=key, tie_copies=args.tie_copies,
                                   noise_key=jax.random.key(2000 + args.seed))
  else:
    scale = args.scale if args.scale in ("error", "point") else float(args.scale)
    reuse = {"reuse": True} if args.reuse else {}
    proj = getattr(dfax.projectors, args.projector)(key, scale=scale,
                                                    tie_copies=args.tie_copies, **reuse)
  return rms_normalised(proj) if args.feedback_norm == "rms" else proj


def rms_normalised(proj):
  """``proj`` with each point's cotangent rescaled to unit RMS over its last (feature) axis."""
  def normalised(error, points):
    return [c * jax.lax.rsqrt(jnp.mean(jnp.square(c), axis=-1, keepdims=True) + 1e-12)
            for c in proj(error, points)]
  return normalised


def backprop_args(args: argparse.Namespace) -> argparse.Namespace:
  """The bp row's arguments: ``args`` with its ``--bp_*`` settings where given.

  Examples:
    >>> args = parse(["--lr", "5e-3", "--warmup", "600", "--bp_lr", "3e-3"])
    >>> bp = backprop_args(args)
    >>> bp.lr, bp.warmup, bp.residual_init
    (0.003, 600, 'default')
  """
  return argparse.Namespace(**{**vars(args), **row_settings(vars(args), "bp")})


def initial_params(config: TransformerConfig, args: argparse.Namespace) -> dict:
  """The LM's initial parameters: ``--seed``'s, with ``config.residual_init``'s kernels."""
  return jax.jit(TransformerLM(config).init)(jax.random.key(args.seed),
                                             jnp.zeros((1, args.seq), jnp.int32))


def scale_blocks_by_depth(decay: float, num_layers: int) -> optax.GradientTransformation:
  """Scales the stacked blocks' updates, block ``l`` by ``decay ** (num_layers - 1 - l)``.

  The blocks of the scanned LM stack their parameters on a leading layer axis
  (``params["params"]["blocks"]``); every other parameter keeps its update. A
  decay of 1 adds nothing to the step.

  Examples:
    >>> import jax.numpy as jnp
    >>> updates = {"params": {"blocks": {"w": jnp.ones((3, 2))}, "head": jnp.ones(2)}}
    >>> scaled, _ = scale_blocks_by_depth(0.5, 3).update(updates, optax.EmptyState())
    >>> scaled["params"]["blocks"]["w"][:, 0].tolist(), scaled["params"]["head"].tolist()
    ([0.25, 0.5, 1.0], [1.0, 1.0])
  """
  if decay == 1.0:
    return optax.identity()
  factors = decay ** jnp.arange(num_layers - 1, -1, -1, dtype=jnp.float32)

  def scale(updates, params=None):
    del params
    blocks = jax.tree_util.tree_map(
        lambda u: u * factors.reshape((-1,) + (1,) * (u.ndim - 1)).astype(u.dtype),
        updates["params"]["blocks"])
    return {**updates, "params": {**updates["params"], "blocks": blocks}}

  return optax.stateless(scale)


def train_row(row: str, model, params, args, corpus, label: str = "") -> dict:
  """Trains one row from ``params``; returns its validation loss and seconds."""
  schedule = optax.warmup_cosine_decay_schedule(0.0, args.lr, args.warmup, args.steps)
  opt = optax.chain(optax.clip_by_global_norm(1.0),
                    optax.adamw(schedule, b2=args.b2, weight_decay=0.01),
                    scale_blocks_by_depth(args.layer_lr_decay, model.config.num_layers))
  loss_fn = lambda p, x, y: optax.softmax_cross_entropy_with_integer_labels(
      lm_forward(model, p, x).astype(jnp.float32), y).mean()
  if row == "bp":
    grad_fn = jax.value_and_grad(loss_fn)
  else:
    grad_fn = dfax.dfa_value_and_grad(loss_fn, projector=projector(row, args),
                                      feedback=feedback(row, args.preset, model))

  @jax.jit
  def step(params, opt_state, x, y):
    loss, grads = grad_fn(params, x, y)
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  val_loss_of = jax.jit(loss_fn)
  opt_state = opt.init(params)
  batches = sample_lm_batches(corpus.train_tokens, args.batch, args.seq, rng=args.seed)
  start = time.perf_counter()
  for i in tqdm(range(args.steps), desc=f"{label or row} L={model.config.num_layers}", leave=False):
    x, y = next(batches)
    params, opt_state, loss = step(params, opt_state, x, y)
    if i == 0:  # the first step compiles: time the others
      jax.block_until_ready(params)
      compile_seconds, start = time.perf_counter() - start, time.perf_counter()
  jax.block_until_ready(params)
  seconds = time.perf_counter() - start
  val = sample_lm_batches(corpus.val_tokens, args.batch, args.seq, rng=12345)
  losses = [float(val_loss_of(params, *next(val))) for _ in range(args.eval_batches)]
  return {"val_loss": float(np.mean(losses)), "train_loss": float(loss), "seconds": seconds,
          "compile_seconds": compile_seconds}


def config_for(args: argparse.Namespace, depth: int, vocab_size: int) -> TransformerConfig:
  """The Transformer LM a row trains, from the benchmark's arguments."""
  return TransformerConfig(vocab_size=vocab_size, d_model=args.d_model, num_heads=args.heads,
                           num_layers=depth, d_ff=args.d_ff, max_len=args.seq,
                           dtype=jnp.bfloat16 if args.dtype == "bfloat16" else jnp.float32,
                           norm=args.norm, error_at=args.error_at,
                           scan_unroll=depth if args.unroll else 1,
                           residual_init=args.residual_init)


def main(argv=None) -> dict:
  args = parse(argv)
  if args.seeds:
    out = across_seeds(args.seeds, args.baseline or ())
    print_seeds(out)
    if args.json:
      pathlib.Path(args.json).write_text(json.dumps(out, indent=2))
    draw_figures(out, args)
    return out
  if args.merge:
    out = merge(args.merge)
    if args.baseline:
      out = merged_against_baseline(out, args.baseline)
    print_summary(out)
    if args.json:
      pathlib.Path(args.json).write_text(json.dumps(out, indent=2))
    draw_figures(out, args)
    return out
  rows = [r for r in args.rows.split(",") if r]
  hybrids = [int(k) for k in args.bp_blocks.split(",") if k]
  unknown = sorted(set(rows) - set(ROWS))
  if unknown:
    raise SystemExit(f"lm_depth.py: unknown rows {unknown}; choose from {','.join(ROWS)}")
  levers = {name: with_lever(args, name) for name in args.levers.split(",") if name}
  bp_args = backprop_args(args)
  corpus = load_shakespeare()
  out = {"args": vars(args), "jax": jax.__version__, "backend": jax.default_backend(),
         "depths": {}}
  print_baseline(out)
  print(f"{'depth':>5} {'row':>10} {'val loss':>9} {'seconds':>8}")
  for depth in (int(d) for d in args.depths.split(",")):
    config = config_for(args, depth, corpus.vocab_size)
    params = initial_params(config, args)
    results = {}
    out["depths"][str(depth)] = summary = {"rows": results}

    def record(row, result, extra=""):
      results[row] = result
      print(f"{depth:>5} {row:>10} {result['val_loss']:>9.4f} {result['seconds']:>8.1f}{extra}",
            flush=True)
      summary.update(summarise(results))
      if args.json:  # after every row: a long run that stops keeps what it measured
        with open(args.json, "w") as f:
          json.dump(out, f, indent=2)

    for row in rows:
      row_args = bp_args if row == "bp" else args
      row_config = config_for(row_args, depth, corpus.vocab_size)
      row_params = params if row_config == config else initial_params(row_config, row_args)
      result = train_row(row, TransformerLM(row_config), row_params, row_args, corpus)
      if row == "dfa":  # the hybrid curve's K=0 point: only the head is back-propagated
        result["digital"] = backward_share(config, 0, args.batch, args.seq)
      record(row, result)
    for k in (k for k in hybrids if k <= depth):
      hybrid = TransformerLM(dataclasses.replace(config, bp_blocks=k))
      same_init = {"params": {**params["params"], "blocks": {"block": params["params"]["blocks"]}}}
      share = backward_share(config, k, args.batch, args.seq)
      record(f"hybrid_{k}", {**train_row("dfa", hybrid, same_init, args, corpus,
                                         label=f"hybrid_{k}"), "digital": share},
             f"  digital {share:.2f}")
    for name, lever_args in levers.items():
      lever_config = config_for(lever_args, depth, corpus.vocab_size)
      record(f"dfa:{name}", train_row("dfa", TransformerLM(lever_config),
                                      initial_params(lever_config, lever_args), lever_args,
                                      corpus, label=f"dfa:{name}"))
    if summary["gap_closure"] is not None:
      print(f"{depth:>5} gap closure {summary['gap_closure']:.3f}", flush=True)
    for name, closure in summary["levers"].items():
      print(f"{depth:>5} gap closure with {name}: {closure:.3f}", flush=True)
    if summary["dfa_lead_over_last_block"] is not None:
      print(f"{depth:>5} DFA's lead over the last-block control "
            f"{summary['dfa_lead_over_last_block']:+.4f} nats", flush=True)
  draw_figures(out, args)
  return out


def draw_figures(out: dict, args: argparse.Namespace) -> None:
  """The figures ``--plot``, ``--plot_levers`` and ``--plot_depths`` ask for, from ``out``:
  one seed's rows, or ``--seeds``' spread (``parse`` pairs each figure with the one it needs)."""
  if args.plot:
    plot_hybrid_curve(out, args.plot)
  if args.plot_levers:
    plot_levers(out, args.plot_levers, through_opu)
  if args.plot_depths:
    plot_depths(out, args.plot_depths)


if __name__ == "__main__":
  main()
