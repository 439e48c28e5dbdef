"""HuggingFace's FlaxGPT2LMHeadModel (pre-LN, from a small config) on Shakespeare characters.

The model is called exactly as HF's ``run_clm_flax.py`` calls it; DFA is the
one-word change ``jax.value_and_grad`` -> ``dfax.dfa_value_and_grad`` with a
feedback selection over the model's own modules. Methods, at the same budget:
``bp``; ``dfa_after_ln``, a cut after every LayerNorm (``dfax.after(nn.LayerNorm)``,
the layout that learns on pre-LN blocks); ``dfa_after``, after every
``FlaxGPT2Block``; ``dfa_in_front``, in front of them; ``dfa_sublayers``, after
the attention and MLP branches; ``control_<layout>``, the same cuts with zero
feedback (only what follows the last cut learns). ``--projector shared`` gives
every point the same feedback matrix. Each run prints (and appends to
``--results``) a JSON line with its validation curve and the RMS of the residual
stream after each block but the last; the figure shows every run in the file.

  for S in 0 1 2; do python scripts/hf_gpt2_shakespeare.py --untie --projector shared \
      --seed $S --methods dfa_after_ln,control_after_ln,bp --results gpt2.jsonl; done
  python scripts/hf_gpt2_shakespeare.py --untie --methods dfa_after,dfa_after_ln --results gpt2.jsonl
  python scripts/hf_gpt2_shakespeare.py --projector shared --methods dfa_after_ln \
      --results gpt2.jsonl                                    # GPT-2's tied head
  python scripts/hf_gpt2_shakespeare.py --methods "" --results gpt2.jsonl \
      --out docs/figures/hf_gpt2_shakespeare.png              # plot only (seeds averaged)
"""

from __future__ import annotations

import argparse
import json
import re
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from transformers import GPT2Config
from transformers.models.gpt2.modeling_flax_gpt2 import (FlaxGPT2MLP, FlaxGPT2Attention,
                                                         FlaxGPT2Block, FlaxGPT2LMHeadModel)

import dfax
from dfax.data.shakespeare import load_shakespeare, sample_lm_batches


# Where the cuts go; "control*" is the same layout with zero feedback.
FEEDBACK = {
    "dfa_after": dfax.after(FlaxGPT2Block),          # after every block (Launay et al.)
    "dfa_in_front": FlaxGPT2Block,                     # in front of every block
    "dfa_sublayers": dfax.after((FlaxGPT2Attention, FlaxGPT2MLP)),  # after each branch
    "dfa_after_ln": dfax.after(nn.LayerNorm),        # at every normalized copy of the stream
}


LABEL_FLAGS = {"untie": False, "lr": 3e-3, "clip": 1.0, "projector": "gaussian", "seed": 0}

# One feedback matrix per point, or one for all (every residual point gets the same B e).
PROJECTORS = {
    "gaussian": dfax.projectors.gaussian,
    "shared": lambda key: dfax.projectors.shared(key, reuse=True),
}  # named in a run's label if changed


def uses_projector(method: str) -> bool:
  """Only the DFA runs use ``--projector`` (bp has none, the controls project zeros)."""
  return method.startswith("dfa")


def run(method: str, args, corpus) -> dict:
  config = GPT2Config(n_layer=args.layers, n_embd=args.width, n_head=4,
                      vocab_size=corpus.vocab_size, n_positions=args.seq_len,
                      resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                      tie_word_embeddings=not args.untie)
  model = FlaxGPT2LMHeadModel(config, seed=args.seed)

  def loss_fn(params, inputs, targets, dropout_rng):
    logits = model(inputs, params=params, dropout_rng=dropout_rng, train=True)[0]
    return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()

  key = jax.random.key(args.seed + 1)
  if method == "bp":
    grad_fn = jax.value_and_grad(loss_fn)
  else:
    feedback = FEEDBACK[method.replace("control", "dfa")]
    projector = (dfax.projectors.zeros() if method.startswith("control")
                 else PROJECTORS[args.projector](key))
    grad_fn = dfax.dfa_value_and_grad(loss_fn, projector=projector, feedback=feedback)
  schedule = optax.warmup_cosine_decay_schedule(0.0, args.lr, min(50, args.steps // 10), args.steps)
  clip = [optax.clip_by_global_norm(args.clip)] if args.clip > 0 else []
  optimizer = optax.chain(*clip, optax.adamw(schedule))

  @jax.jit
  def step(params, opt_state, inputs, targets, rng):
    loss, grads = grad_fn(params, inputs, targets, rng)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  @jax.jit
  def evaluate(params, inputs, targets):
    out = model(inputs, params=params, train=False, output_hidden_states=True)
    loss = optax.softmax_cross_entropy_with_integer_labels(out.logits, targets).mean()
    # RMS of the residual stream after each block but the last (HF hands back
    # the last one after ln_f): it stays bounded under backprop.
    rms = [jnp.sqrt(jnp.mean(h ** 2)) for h in out.hidden_states[1:-1]]
    return loss, rms

  params = model.params
  opt_state = optimizer.init(params)
  batches = sample_lm_batches(corpus.train_tokens, args.batch, args.seq_len, rng=args.seed)
  val = next(sample_lm_batches(corpus.val_tokens, 256, args.seq_len, rng=123))
  curve, stream_rms, start = [], [], time.time()
  for i in range(args.steps):
    inputs, targets = next(batches)
    params, opt_state, loss = step(params, opt_state, inputs, targets, jax.random.key(i))
    if (i + 1) % args.eval_every == 0:
      loss, rms = evaluate(params, *val)
      curve.append((i + 1, float(loss)))
      stream_rms.append((i + 1, [round(float(r), 3) for r in rms]))
  flags = "".join(f", {k}={getattr(args, k)}" for k, default in LABEL_FLAGS.items()
                  if getattr(args, k) != default
                  and (k != "projector" or uses_projector(method)))
  return {"method": method, "label": f"{method} ({args.steps} steps{flags})",
          "val_loss": curve[-1][1], "curve": curve, "stream_rms": stream_rms,
          "seconds": round(time.time() - start, 1)}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=600)
  parser.add_argument("--layers", type=int, default=2)
  parser.add_argument("--width", type=int, default=128)
  parser.add_argument("--seq_len", type=int, default=64)
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--lr", type=float, default=3e-3)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--eval_every", type=int, default=100)
  parser.add_argument("--clip", type=float, default=1.0,
                      help="global-norm gradient clip (0: none)")
  parser.add_argument("--projector", default="gaussian", choices=sorted(PROJECTORS))
  parser.add_argument("--untie", action="store_true",
                      help="separate input embedding and output head (GPT-2 ties them)")
  parser.add_argument("--methods", default="bp,dfa_after,dfa_in_front,control")
  parser.add_argument("--out", default="", help="figure path (PNG)")
  parser.add_argument("--results", default="",
                      help="JSONL file: each run is appended; the figure shows every run in it")
  args = parser.parse_args()
  methods = [m for m in args.methods.split(",") if m]  # --methods "": only plot --results
  corpus = load_shakespeare() if methods else None
  print(json.dumps({"jax": jax.__version__, "transformers": __import__("transformers").__version__,
                    "args": vars(args)}), flush=True)
  results = []
  for method in methods:
    results.append(run(method, args, corpus))
    print(json.dumps(results[-1]), flush=True)
    if args.results:
      with open(args.results, "a") as f:
        f.write(json.dumps(results[-1]) + "\n")
      with open(args.results) as f:
        results = [json.loads(line) for line in f if line.strip()]
    plot(results, args)
  if not results and args.results:
    with open(args.results) as f:
      plot([json.loads(line) for line in f if line.strip()], args)


def _by_label_without_seed(results) -> dict[str, list[dict]]:
  """Runs grouped by label, the seed left out: seeds of one setting are one curve."""
  groups = {}
  for r in results:
    label = re.sub(r", seed=\d+", "", r.get("label", r["method"]))
    if not uses_projector(r["method"]):  # results files may name it for those runs too
      label = re.sub(r", projector=\w+", "", label)
    groups.setdefault(label, []).append(r)
  return groups


def plot(results, args):
  """Validation loss and the residual stream's RMS per setting (mean over seeds, min-max band)."""
  if not args.out:
    return
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  import numpy as np
  fig, (ax_loss, ax_rms) = plt.subplots(1, 2, figsize=(12, 5.5))
  for label, runs in _by_label_without_seed(results).items():
    steps = [s for s, _ in runs[0]["curve"]]
    losses = np.array([[v for _, v in r["curve"]] for r in runs])
    finals = losses[:, -1]
    seeds = f" ± {finals.std(ddof=1):.3f}, {len(runs)} seeds" if len(runs) > 1 else ""
    line, = ax_loss.plot(steps, losses.mean(0), label=f"{label}: {finals.mean():.3f}{seeds}")
    band = dict(color=line.get_color(), alpha=0.2)
    if len(runs) > 1:
      ax_loss.fill_between(steps, losses.min(0), losses.max(0), **band)
    if all(r.get("stream_rms") and r["stream_rms"][0][1] for r in runs):  # >= 2 blocks
      rms = np.array([[v[0] for _, v in r["stream_rms"]] for r in runs])
      ax_rms.plot(steps, rms.mean(0), color=line.get_color())
      if len(runs) > 1:
        ax_rms.fill_between(steps, rms.min(0), rms.max(0), **band)
  ax_loss.set_xlabel("step")
  ax_loss.set_ylabel("validation loss (nats/char)")
  ax_loss.set_title(f"HF FlaxGPT2 ({args.layers} blocks, d={args.width}) on Shakespeare")
  ax_rms.set_xlabel("step")
  ax_rms.set_yscale("log")
  ax_rms.set_ylabel("RMS of the residual stream after block 0")
  ax_rms.set_title("stream scale (bounded under backprop)")
  fig.legend(loc="lower center", ncol=2, fontsize=8)
  fig.tight_layout(rect=(0, 0.17, 1, 1))
  fig.savefig(args.out, dpi=110)
  plt.close(fig)


if __name__ == "__main__":
  main()
