"""The Transformer LM's DFA gradient, written out by hand: the floor of ``step_time.py``.

Plain jnp on the model's own parameter tree, with the numerics of the Flax modules
(LayerNorm with eps 1e-6 and the fast variance, tanh-approximated GELU, queries scaled by
1/sqrt(head_dim), masked logits set to the dtype's minimum). The layers run in lax.scan as
the model's nn.scan does, unrolled as its ``scan_unroll`` says. The feedback comes from the
projector dfax is given, asked for the points (paths, shapes, stacking) dfax's trace makes,
so both get the same B_k. Each segment between cuts is differentiated with its own
``jax.vjp``, a cut segment with respect to its parameters only, so no cotangent DFA
discards is computed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

import dfax
from dfax.models.transformer import TransformerConfig

HANDWRITTEN_LAYOUTS = (("after_ln", "pre"), ("macro_out", "post"))  # (preset, norm)
_LN_EPS = 1e-6  # flax.linen.LayerNorm's default


def _dense(p, x):
  return x @ p["kernel"] + p["bias"]


def _layer_norm(p, x):
  mean = x.mean(-1, keepdims=True)
  var = jnp.maximum((x * x).mean(-1, keepdims=True) - mean * mean, 0.0)
  return (x - mean) * (jax.lax.rsqrt(var + _LN_EPS) * p["scale"]) + p["bias"]


def _attention(p, h, causal: bool):
  proj = lambda q, x: jnp.einsum("btd,dnh->btnh", x, q["kernel"]) + q["bias"]
  q, k, v = proj(p["query"], h), proj(p["key"], h), proj(p["value"], h)
  q = q / jnp.sqrt(q.shape[-1]).astype(q.dtype)
  logits = jnp.einsum("bqnh,bknh->bnqk", q, k)
  if causal:
    t = h.shape[1]
    logits = jnp.where(jnp.tril(jnp.ones((t, t), bool)), logits, jnp.finfo(logits.dtype).min)
  o = jnp.einsum("bnqk,bknh->bqnh", jax.nn.softmax(logits, axis=-1), v)
  return jnp.einsum("btnh,nhd->btd", o, p["out"]["kernel"]) + p["out"]["bias"]


def _mlp(p, h):
  return _dense(p["fc2"], jax.nn.gelu(_dense(p["fc1"], h)))


def _embed(embedding, pos, tokens):
  return jnp.take(embedding, tokens, axis=0) + pos[: tokens.shape[1]]


def _post_block(p, x, causal: bool):
  x = _layer_norm(p["ln_attn"], x + _attention(p["attn"], x, causal))
  return _layer_norm(p["ln_mlp"], x + _mlp(p, x))


def _ce(labels):
  return lambda z: optax.softmax_cross_entropy_with_integer_labels(z, labels).mean()


def handwritten_lm_dfa(config: TransformerConfig, preset: str, projector):
  """The DFA gradient dfax computes for ``TransformerLM`` under ``lm_forward``, by hand.

  Two layouts, the ones that train (docs/feedback_points.md):

  * ``after_ln`` on pre-LN blocks: points at every LayerNorm output. Each
    sublayer (attention, MLP) reads a cut value, so it is differentiated with
    respect to its parameters only; its output cotangent is the residual
    stream's. The stream's cotangent is built from the top down: the error at
    the final hidden state (``error_at="hidden"``) or ``ln_final``'s feedback
    pulled back through it ("logits"), plus the feedback of every LayerNorm
    pulled back through that LayerNorm; it ends in the embeddings.
  * ``macro_out`` on post-LN blocks: a point at every block output. Blocks
    1..L-1 are differentiated with respect to their parameters only; block 0
    with the embeddings in front of it (its input cotangent trains them).

  The error ``e`` is ``dL/dlogits`` with ``error_at="logits"``; then the head
  reads a cut value and trains on ``e``, and ``after_ln`` also has a point
  after ``ln_final``. With ``"hidden"`` ``lm_forward`` applies the body, then
  the final LayerNorm and the head inside ``dfax.exact()``: those train by
  exact backprop and ``e`` is the exact ``dL/dh`` of the final hidden state.

  Args:
    config: the model's config; ``config.norm`` must match the preset.
    preset: "after_ln" or "macro_out".
    projector: the projector given to dfax (e.g. ``dfax.projectors.gaussian(key)``).

  Returns:
    ``fn(params, tokens, labels) -> (loss, grads)``, like
    ``dfax.dfa_value_and_grad`` of the cross-entropy of ``lm_forward``.
  """
  if (preset, config.norm) not in HANDWRITTEN_LAYOUTS:
    raise ValueError(f"no hand-written DFA gradient for preset {preset!r} with "
                     f"norm={config.norm!r}; written: {HANDWRITTEN_LAYOUTS}")
  if getattr(config, "bp_blocks", 0):
    raise ValueError("no hand-written DFA gradient for a hybrid stack (bp_blocks > 0)")
  spec = lambda path, x, stacked: dfax.PointSpec(path, tuple(x.shape), x.dtype,
                                                 stack_ndim=int(stacked))
  hidden = config.error_at == "hidden"
  causal = config.causal
  unroll = config.scan_unroll

  def pre_ln_after_ln(params, tokens, labels):
    p = params["params"]
    x, embed_vjp = jax.vjp(lambda e, pos: _embed(e, pos, tokens).astype(config.dtype),
                           p["embed"]["embedding"], p["pos_embed"])

    def layer(x, q):
      a, ln_attn_vjp = jax.vjp(_layer_norm, q["ln_attn"], x)
      o, attn_vjp = jax.vjp(lambda w: _attention(w, a, causal), q["attn"])
      x = x + o
      m, ln_mlp_vjp = jax.vjp(_layer_norm, q["ln_mlp"], x)
      o, mlp_vjp = jax.vjp(lambda w: _mlp(w, m), {"fc1": q["fc1"], "fc2": q["fc2"]})
      return x + o, (a, m, ln_attn_vjp, attn_vjp, ln_mlp_vjp, mlp_vjp)

    h, (a, m, *vjps) = jax.lax.scan(layer, x, p["blocks"], unroll=unroll)
    blocks = [spec("blocks/ln_attn/out", a, True), spec("blocks/ln_mlp/out", m, True)]
    if hidden:  # ln_final and the head run inside dfax.exact(): exact backprop down to h
      f, ln_final_vjp = jax.vjp(_layer_norm, p["ln_final"], h)
      logits, head_vjp = jax.vjp(_dense, p["head"], f)
      loss, e_logits = jax.value_and_grad(_ce(labels))(logits)
      g_head, df = head_vjp(e_logits)
      g_ln_final, e = ln_final_vjp(df)  # the error, dL/dh
      b_attn, b_mlp = projector(e, blocks)
      g = e  # the tap passes the error on to h, down the residual stream
    else:  # ln_final's output is a point too; the head reads it cut
      f, ln_final_vjp = jax.vjp(_layer_norm, p["ln_final"], h)
      logits, head_vjp = jax.vjp(lambda w: _dense(w, f), p["head"])
      loss, e = jax.value_and_grad(_ce(labels))(logits)
      (g_head,) = head_vjp(e)
      b_attn, b_mlp, b_final = projector(e, blocks + [spec("ln_final/out", f, False)])
      g_ln_final, g = ln_final_vjp(b_final)

    def back(g, xs):
      b_attn, b_mlp, ln_attn_vjp, attn_vjp, ln_mlp_vjp, mlp_vjp = xs
      (g_mlp,) = mlp_vjp(g)
      g_ln_mlp, dx = ln_mlp_vjp(b_mlp)
      g = g + dx
      (g_attn,) = attn_vjp(g)
      g_ln_attn, dx = ln_attn_vjp(b_attn)
      return g + dx, {"attn": g_attn, "fc1": g_mlp["fc1"], "fc2": g_mlp["fc2"],
                      "ln_attn": g_ln_attn, "ln_mlp": g_ln_mlp}

    g, g_blocks = jax.lax.scan(back, g, (b_attn, b_mlp, *vjps), reverse=True, unroll=unroll)
    g_embedding, g_pos = embed_vjp(g)
    return loss, {"params": {"embed": {"embedding": g_embedding}, "pos_embed": g_pos,
                             "blocks": g_blocks, "ln_final": g_ln_final, "head": g_head}}

  def post_ln_macro_out(params, tokens, labels):
    p = params["params"]
    first = jax.tree.map(lambda w: w[0], p["blocks"])
    rest = jax.tree.map(lambda w: w[1:], p["blocks"])
    block0 = lambda e, pos, q: _post_block(q, _embed(e, pos, tokens).astype(config.dtype),
                                           causal)
    x, block0_vjp = jax.vjp(block0, p["embed"]["embedding"], p["pos_embed"], first)

    def layer(x, q):
      y, vjp = jax.vjp(lambda w: _post_block(w, x, causal), q)
      return y, (y, vjp)

    h, (ys, vjps) = jax.lax.scan(layer, x, rest, unroll=unroll)
    outs = jnp.concatenate([x[None], ys])  # every block's output: the stacked point
    if hidden:  # the head runs inside dfax.exact(): exact backprop down to h, the error
      logits, head_vjp = jax.vjp(_dense, p["head"], h)
      loss, e_logits = jax.value_and_grad(_ce(labels))(logits)
      g_head, e = head_vjp(e_logits)
    else:  # h is the last block's cut output: the head needs no input cotangent
      logits, head_vjp = jax.vjp(lambda w: _dense(w, h), p["head"])
      loss, e = jax.value_and_grad(_ce(labels))(logits)
      (g_head,) = head_vjp(e)
    (b,) = projector(e, [spec("blocks/out", outs, True)])
    g_embedding, g_pos, g_first = block0_vjp(b[0])
    _, g_rest = jax.lax.scan(lambda _, xs: (None, xs[1](xs[0])[0]), None, (b[1:], vjps),
                             unroll=unroll)
    g_blocks = jax.tree.map(lambda a, r: jnp.concatenate([a[None], r]), g_first, g_rest)
    return loss, {"params": {"embed": {"embedding": g_embedding}, "pos_embed": g_pos,
                             "blocks": g_blocks, "head": g_head}}

  return pre_ln_after_ln if preset == "after_ln" else post_ln_macro_out
