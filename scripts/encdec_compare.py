"""DFA on HF encoder–decoders (T5, BART) and a decoder-only Llama, at a fixed budget.

Toy task that needs the encoder: the source is ``SOURCE`` random tokens, the
target their first ``TARGET`` tokens reversed. T5 and BART are called as HF's
``run_summarization_flax.py`` calls them (``input_ids``, ``attention_mask``,
``decoder_input_ids``, teacher forcing); Llama reads ``source, separator,
target`` as one sequence and is scored on the target positions only.

Methods (same model, data, optimiser and steps):

- ``bp``: ``jax.grad``.
- ``dfa``: a cut after every norm layer with the default Gaussian projector;
  on T5/BART ``dfax.encoder_decoder(dfax.after(dfax.is_norm_layer))`` (the
  encoder's points get the target-averaged error, broadcast over source
  tokens), on Llama ``dfax.after(dfax.is_norm_layer)``.
- ``dfa_flat`` (T5/BART): the same cuts, but each encoder point gets a
  projection of the whole flattened per-example error (target tokens x
  vocabulary), each source token its own columns: the alternative to pooling.
- ``control``: the same cuts with ``dfax.projectors.zeros()``: only the head
  (what follows the last cut) learns.
- ``last_block``: cuts in front of the last (decoder) block, zero feedback:
  the last block, final norm and head learn by backprop, the rest is frozen.

Prints a JSON line per run (and appends it to ``--results``); ``--plot``
draws every run in the file. ``--quick`` is a seconds-long smoke run.

  python scripts/encdec_compare.py --models t5,bart,llama --steps 300 --results encdec.jsonl
  python scripts/encdec_compare.py --models "" --results encdec.jsonl \
      --plot docs/figures/encdec_compare.png
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import transformers
from transformers.models.bart import modeling_flax_bart as hf_bart
from transformers.models.llama import modeling_flax_llama as hf_llama
from transformers.models.t5 import modeling_flax_t5 as hf_t5

import dfax

SOURCE, TARGET, SPECIAL = 12, 8, 3  # token ids 0..2: pad/start/separator


class _JnpWithClipAMax:
  """``jax.numpy`` whose ``clip`` also takes ``a_min``/``a_max``.

  HF's Flax T5 (transformers 4.57) calls ``jnp.clip(x, a_max=...)``, which
  jax 0.10 removed; T5's module gets this stand-in for its ``jnp`` global.
  """

  def __getattr__(self, name):
    return getattr(jnp, name)

  @staticmethod
  def clip(x, a_min=None, a_max=None, **kwargs):
    lo, hi = kwargs.pop("min", a_min), kwargs.pop("max", a_max)
    return jnp.clip(x, min=lo, max=hi, **kwargs)


def _patch_t5():
  try:
    jnp.clip(jnp.zeros(1), a_max=0)
  except TypeError:
    hf_t5.jnp = _JnpWithClipAMax()


def make_task(key, batch: int, vocab: int):
  """``(source, target)``: random tokens, and the first TARGET of them reversed."""
  src = jax.random.randint(key, (batch, SOURCE), SPECIAL, vocab)
  return src, src[:, :TARGET][:, ::-1]


@dataclasses.dataclass
class Setup:
  model: object
  loss_and_acc: object  # (params, src, tgt) -> (loss, token accuracy)
  last_block: str       # path of the last block, for the "last_block" control
  seq2seq: bool


def build(name: str, width: int, layers: int, vocab: int) -> Setup:
  """A tiny HF model from a config (no download) and its loss, as HF's scripts write it."""
  if name == "t5":
    _patch_t5()
    config = transformers.T5Config(vocab_size=vocab, d_model=width, d_kv=width // 4,
                                   d_ff=2 * width, num_layers=layers,
                                   num_decoder_layers=layers, num_heads=4,
                                   relative_attention_num_buckets=8, dropout_rate=0.0,
                                   decoder_start_token_id=1, pad_token_id=0,
                                   tie_word_embeddings=False)
    model = hf_t5.FlaxT5ForConditionalGeneration(config, seed=0, _do_init=False)
    last = f"decoder/block/{layers - 1}"
  elif name == "bart":
    config = transformers.BartConfig(vocab_size=vocab, d_model=width, encoder_layers=layers,
                                     decoder_layers=layers, encoder_attention_heads=4,
                                     decoder_attention_heads=4, encoder_ffn_dim=2 * width,
                                     decoder_ffn_dim=2 * width, max_position_embeddings=64,
                                     dropout=0.0, attention_dropout=0.0, pad_token_id=0,
                                     bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
                                     forced_eos_token_id=None)
    model = hf_bart.FlaxBartForConditionalGeneration(config, seed=0, _do_init=False)
    last = f"model/decoder/layers/{layers - 1}"
  elif name == "llama":
    config = transformers.LlamaConfig(vocab_size=vocab, hidden_size=width,
                                      intermediate_size=2 * width, num_hidden_layers=layers,
                                      num_attention_heads=4, num_key_value_heads=4,
                                      max_position_embeddings=64)
    model = hf_llama.FlaxLlamaForCausalLM(config, seed=0, _do_init=False)
    last = f"model/layers/{layers - 1}"
  else:
    raise ValueError(f"unknown model {name!r}: t5, bart or llama")

  def score(logits, labels):
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    return loss, (logits.argmax(-1) == labels).mean()

  if name == "llama":
    def loss_and_acc(params, src, tgt):  # run_clm_flax.py's call; loss on the target only
      sep = jnp.full((src.shape[0], 1), 2, src.dtype)
      ids = jnp.concatenate([src, sep, tgt], axis=1)
      logits = model(ids, params=params, train=False)[0]
      return score(logits[:, SOURCE:-1], tgt)
  else:
    def loss_and_acc(params, src, tgt):  # run_summarization_flax.py's call
      start = jnp.ones((tgt.shape[0], 1), tgt.dtype)
      dec_in = jnp.concatenate([start, tgt[:, :-1]], axis=1)
      logits = model(input_ids=src, attention_mask=jnp.ones_like(src),
                     decoder_input_ids=dec_in, params=params, train=False)[0]
      return score(logits, tgt)

  return Setup(model, loss_and_acc, last, name != "llama")


def _frozen(error, points):
  """Zero feedback for any point (the last block's inputs include T5's position bias)."""
  del error
  return [jnp.zeros(p.shape, p.dtype) for p in points]


def flat_encoder(key):
  """Encoder points get a projection of the whole flattened per-example error."""
  gaussian = dfax.projectors.gaussian(key)

  def projector(error, points):
    flat = error.reshape(error.shape[0], -1)  # (batch, target tokens x vocab)
    return [gaussian(flat, [dataclasses.replace(p, pooled=0)])[0] if p.pooled
            else gaussian(error, [p])[0] for p in points]

  return projector


def method_grad(method: str, setup: Setup, key):
  """``(params, src, tgt) -> ((loss, acc), grads)`` for one method."""
  fn = setup.loss_and_acc
  if method == "bp":
    return jax.value_and_grad(fn, has_aux=True)
  norms = dfax.after(dfax.is_norm_layer)
  cuts = dfax.encoder_decoder(norms) if setup.seq2seq else norms
  projector = {"dfa": dfax.projectors.gaussian(key), "control": dfax.projectors.zeros(),
               "dfa_flat": flat_encoder(key)}.get(method)
  if method == "last_block":
    cuts, projector = dfax.by_name(setup.last_block), _frozen
  if projector is None or (method == "dfa_flat" and not setup.seq2seq):
    raise ValueError(f"unknown method {method!r} for this model")
  return dfax.dfa_value_and_grad(fn, has_aux=True, projector=projector, feedback=cuts)


def run(name: str, method: str, args) -> dict:
  setup = build(name, args.width, args.layers, args.vocab)
  params = setup.model.init_weights(jax.random.key(args.seed), (1, 4))
  params = flax.core.unfreeze(params) if hasattr(flax.core, "unfreeze") else params
  if name == "t5":  # HF inits T5's untied head with std 1 (logits ~ N(0, width)): rescale it
    params["lm_head"]["kernel"] = params["lm_head"]["kernel"] * args.width ** -0.5
  opt = optax.adam(args.lr)
  opt_state = opt.init(params)
  grad_fn = method_grad(method, setup, jax.random.key(1000 + args.seed))

  @jax.jit
  def step(params, opt_state, key):
    src, tgt = make_task(key, args.batch, args.vocab)
    (loss, acc), grads = grad_fn(params, src, tgt)
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss, acc

  # The test set: 256 sequences drawn once from a key no training batch uses, never tuned on.
  test_src, test_tgt = make_task(jax.random.key(10 ** 6 + args.seed), 256, args.vocab)
  evaluate = jax.jit(setup.loss_and_acc)
  curve, t0 = [], time.time()
  data_key = jax.random.key(args.seed)
  for i in range(args.steps):
    params, opt_state, loss, acc = step(params, opt_state, jax.random.fold_in(data_key, i))
    if (i + 1) % args.eval_every == 0 or i + 1 == args.steps:
      test_loss, test_acc = evaluate(params, test_src, test_tgt)
      curve.append((i + 1, float(test_loss), float(test_acc)))
  return {"model": name, "method": method, "seed": args.seed, "steps": args.steps,
          "batch": args.batch, "width": args.width, "layers": args.layers, "lr": args.lr,
          "vocab": args.vocab, "test_loss": curve[-1][1], "test_accuracy": curve[-1][2],
          "curve": curve, "seconds": round(time.time() - t0, 1),
          "jax": jax.__version__, "flax": flax.__version__,
          "transformers": transformers.__version__, "machine": platform.machine()}


def plot(rows: list[dict], out: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  models = sorted({r["model"] for r in rows}, key=["t5", "bart", "llama"].index)
  fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 3.4), squeeze=False)
  styles = {"bp": ("k", "-"), "dfa": ("C0", "-"), "dfa_flat": ("C0", ":"),
            "last_block": ("C3", "--"), "control": ("C7", "--")}
  for ax, model in zip(axes[0], models):
    for method, (color, ls) in styles.items():
      runs = [r for r in rows if r["model"] == model and r["method"] == method]
      if not runs:
        continue
      steps = [s for s, _, _ in runs[0]["curve"]]
      acc = np.mean([[a for _, _, a in r["curve"]] for r in runs], axis=0)
      ax.plot(steps, acc, color=color, ls=ls, label=f"{method} (n={len(runs)})")
    ax.set_title(model)
    ax.set_xlabel("step")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
  axes[0][0].set_ylabel("test token accuracy (held out)")
  axes[0][0].legend(fontsize=8)  # the first panel (T5) has every method
  fig.tight_layout()
  fig.savefig(out, dpi=110)


def parse(argv=None) -> argparse.Namespace:
  """The command line's arguments."""
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--models", default="t5,bart,llama")
  parser.add_argument("--methods", default="bp,dfa,dfa_flat,control,last_block")
  parser.add_argument("--steps", type=int, default=300)
  parser.add_argument("--eval-every", type=int, default=25)
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--width", type=int, default=32)
  parser.add_argument("--layers", type=int, default=2)
  parser.add_argument("--vocab", type=int, default=24)
  parser.add_argument("--lr", type=float, default=3e-3)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--results", default=None, help="append JSON lines here")
  parser.add_argument("--plot", default=None, help="PNG of every run in --results")
  parser.add_argument("--quick", action="store_true", help="a few steps, tiny: a smoke run")
  return parser.parse_args(argv)


def main(argv=None) -> list[dict]:
  args = parse(argv)
  if args.quick:
    args.steps, args.eval_every, args.batch, args.width, args.layers = 3, 3, 4, 16, 1
  rows = []
  for name in [m for m in args.models.split(",") if m]:
    for method in [m for m in args.methods.split(",") if m]:
      if method == "dfa_flat" and name == "llama":
        continue
      row = run(name, method, args)
      print(json.dumps({k: v for k, v in row.items() if k != "curve"}), flush=True)
      rows.append(row)
      if args.results:
        with open(args.results, "a") as f:
          f.write(json.dumps(row) + "\n")
  if args.plot:
    every = rows
    if args.results:
      with open(args.results) as f:
        every = [json.loads(line) for line in f if line.strip()]
    plot(every, args.plot)
  return rows


if __name__ == "__main__":
  main()
