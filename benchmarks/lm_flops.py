"""The analytic floor: matmul FLOPs of the Transformer LM's DFA and backprop gradients.

``lm_flops`` counts, for the layouts ``handwritten_lm`` writes out, the forward
matmuls, backprop's backward, and DFA's backward (the input cotangents it skips
and the projections ``B_k e`` it adds); ``step_time.py --model transformer``
prints the ratios beside the measured ones. ``backward_share`` is the share of
backprop's backward matmuls a hybrid (the last K blocks by backprop) still
computes by backprop, which ``lm_depth.py`` prints beside each hybrid row.
"""

from __future__ import annotations

import dataclasses

from dfax.models.transformer import TransformerConfig
from handwritten_lm import HANDWRITTEN_LAYOUTS


@dataclasses.dataclass(frozen=True)
class Matmul:
  """One matmul of the forward pass, ``flops = 2 m n k``.

  Its backward costs ``flops`` for the cotangent of the second operand (the
  weight, or the other activation) plus ``flops`` again when the cotangent of
  its first operand (the input) is needed.
  """
  name: str
  flops: int
  bp_input_cotangent: bool = True  # False only where the input is data (no parameters behind)
  dfa_input_cotangent: bool = True  # False where the input is a cut value

  def backward(self, dfa: bool) -> int:
    needed = self.dfa_input_cotangent if dfa else self.bp_input_cotangent
    return self.flops * (1 + int(needed))


def flop_ratio(matmuls, projections) -> dict:
  """Forward and backward matmul FLOPs of backprop and DFA, and their ratios.

  Args:
    matmuls: the forward's ``Matmul`` records.
    projections: FLOPs of each ``B_k e`` (``2 N n_out width``), which DFA adds.

  Returns:
    A dict: ``forward``, ``bp_backward``, ``dfa_backward`` (projections
    included), ``projections``, ``dfa_over_bp_backward`` and
    ``dfa_over_bp_gradient`` (forward + backward, what ``*_grad`` time).
  """
  forward = sum(m.flops for m in matmuls)
  bp = sum(m.backward(dfa=False) for m in matmuls)
  proj = sum(projections)
  dfa = sum(m.backward(dfa=True) for m in matmuls) + proj
  return {"forward": forward, "bp_backward": bp, "dfa_backward": dfa, "projections": proj,
          "dfa_over_bp_backward": dfa / bp, "dfa_over_bp_gradient": (forward + dfa) / (
              forward + bp)}


def lm_matmuls(config: TransformerConfig, batch: int, seq: int, preset: str):
  """The LM's forward matmuls and DFA's projections under a hand-written layout.

  Per block, with ``N = batch * seq`` tokens: Q, K, V and the output projection
  (``2 N d d`` each), the attention scores and the weighted sum of the values
  (``2 batch seq seq d`` each), ``fc1`` and ``fc2`` (``2 N d d_ff`` each); then
  the head (``2 N d vocab``). The embeddings train, so backprop needs every
  input cotangent (the lookup's backward is a scatter, no matmul). DFA skips
  the input cotangent of every matmul that reads a cut value:

  * ``after_ln`` (pre-LN): Q, K, V and ``fc1`` of every block;
  * ``macro_out`` (post-LN): Q, K, V of blocks 1..L-1;
  * both, with ``error_at="logits"``: the head (with "hidden" its input
    cotangent is needed: the error is ``dL/dh``);

  and pays ``2 N n_out d`` per point for ``B_k e``: ``n_out`` is the vocabulary
  with ``error_at="logits"`` (``after_ln`` then has a point after ``ln_final``
  too), ``d`` with "hidden".

  Returns:
    ``(matmuls, projections)`` for ``flop_ratio``.
  """
  if (preset, config.norm) not in HANDWRITTEN_LAYOUTS:
    raise ValueError(f"no FLOP count for preset {preset!r} with norm={config.norm!r}")
  n, d, ff, vocab = batch * seq, config.d_model, config.d_ff, config.vocab_size
  after_ln, hidden = preset == "after_ln", config.error_at == "hidden"
  matmuls = []
  for layer in range(config.num_layers):
    cut_qkv = after_ln or layer > 0
    matmuls += [Matmul(f"{layer}/{w}", 2 * n * d * d, dfa_input_cotangent=not cut_qkv)
                for w in ("query", "key", "value")]
    matmuls += [Matmul(f"{layer}/scores", 2 * batch * seq * seq * d),
                Matmul(f"{layer}/values", 2 * batch * seq * seq * d),
                Matmul(f"{layer}/out", 2 * n * d * d),
                Matmul(f"{layer}/fc1", 2 * n * d * ff, dfa_input_cotangent=not after_ln),
                Matmul(f"{layer}/fc2", 2 * n * ff * d)]
  matmuls.append(Matmul("head", 2 * n * d * vocab, dfa_input_cotangent=hidden))
  points = 2 * config.num_layers if after_ln else config.num_layers
  if after_ln and not hidden:
    points += 1  # ln_final's output
  return matmuls, [2 * n * (d if hidden else vocab) * d] * points


def lm_flops(config: TransformerConfig, batch: int, seq: int, preset: str) -> dict:
  """``flop_ratio`` of ``lm_matmuls``: the analytic DFA/BP floor of a layout."""
  return flop_ratio(*lm_matmuls(config, batch, seq, preset))


def backward_share(config: TransformerConfig, bp_blocks: int, batch: int, seq: int) -> float:
  """Share of backprop's backward matmul FLOPs that a hybrid still computes by backprop.

  Per block the forward matmuls cost ``2 B T (4 d^2 + 2 d d_ff) + 4 B T^2 d``
  (projections, MLP, attention scores and mixing), the head ``2 B T d V``;
  backprop's backward costs twice the forward. A hybrid back-propagates
  through its last ``bp_blocks`` blocks and the head; the DFA blocks' weight
  gradients and the projection are what a device can take over.

  Examples:
    >>> c = TransformerConfig(vocab_size=84, d_model=128, num_layers=8, d_ff=512)
    >>> round(backward_share(c, 0, 32, 128), 3), backward_share(c, 8, 32, 128)
    (0.006, 1.0)
  """
  b, t, d = batch, seq, config.d_model
  block = 2 * b * t * (4 * d * d + 2 * d * config.d_ff) + 4 * b * t * t * d
  head = 2 * b * t * d * config.vocab_size
  return (bp_blocks * block + head) / (config.num_layers * block + head)
