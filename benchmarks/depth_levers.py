"""The levers of the depth benchmark's ablation study, one record each.

``LEVERS`` maps each lever's name to what it changes and the ``lm_depth.py``
arguments it sets; ``lm_depth.py --levers a,b`` adds one ``dfa:<lever>`` row per
lever, and its ``--help``, the depth page's table and the lever figure read
the same records.
"""

from __future__ import annotations

import argparse
import dataclasses


@dataclasses.dataclass(frozen=True)
class Lever:
  """One lever of the ablation study: a name, what it changes, and the arguments it sets."""
  name: str
  what: str
  settings: dict


LEVERS = {lever.name: lever for lever in (
    Lever("lr_3e-4", "AdamW peak learning rate 3e-4 (default 1e-3)", {"lr": 3e-4}),
    Lever("lr_2e-3", "AdamW peak learning rate 2e-3", {"lr": 2e-3}),
    Lever("lr_3e-3", "AdamW peak learning rate 3e-3", {"lr": 3e-3}),
    Lever("lr_4e-3", "AdamW peak learning rate 4e-3", {"lr": 4e-3}),
    Lever("warmup_300", "300 warm-up steps (default 100)", {"warmup": 300}),
    Lever("layer_lr_0.85", "block l's updates scaled 0.85^(L-1-l): lower blocks learn slower "
          "(the first of 8 at 0.32 of the peak rate)", {"layer_lr_decay": 0.85}),
    Lever("layer_lr_1.1", "block l's updates scaled 1.1^(L-1-l): lower blocks learn faster "
          "(the first of 8 at 1.95 times the peak rate)", {"layer_lr_decay": 1.1}),
    Lever("b2_0.95", "AdamW b2 0.95 (default 0.999)", {"b2": 0.95}),
    Lever("scale_point", "feedback entries scaled 1/sqrt(point width), not 1/sqrt(n_out)",
          {"scale": "point"}),
    Lever("rms", "each point's feedback normalised to unit RMS per token", {"feedback_norm": "rms"}),
    Lever("shared", "one shared Gaussian matrix for every point (sliced), not one per point",
          {"projector": "shared"}),
    Lever("tied", "the layers of the scan share one matrix per point (tie_copies): every block "
          "pushes the residual stream the same way", {"tie_copies": True}),
    Lever("reuse", "one shared matrix whose first d columns every point takes (TinyDFA): every "
          "point of one width gets the same signal", {"projector": "shared", "reuse": True}),
    Lever("opu", "the simulated OPU (ternarised error, 8-bit camera, noise)", {"projector": "opu"}),
    Lever("opu_topk", "the simulated OPU, each error row ternarised keeping its largest 10% of "
          "entries (topk) instead of those beyond one std", {"projector": "opu", "opu_topk": 0.1}),
    Lever("opu_analog", "the simulated OPU with the error sent unternarised (camera and noise "
          "kept): what ternarisation alone costs", {"projector": "opu", "opu_ternarize": False}),
    Lever("opu_bits1", "the simulated OPU sending sign-separated 1-bit planes, each sign with "
          "its own scale (two frames, as ternarisation)",
          {"projector": "opu", "opu_input_bits": 1}),
    Lever("opu_bits4", "the simulated OPU sending sign-separated 4-bit planes (eight frames)",
          {"projector": "opu", "opu_input_bits": 4}),
    Lever("opu_keep", "the simulated OPU reading only the half of its camera pixels with the "
          "strongest anchor (anchor_keep 0.5)", {"projector": "opu", "opu_anchor_keep": 0.5}),
    Lever("macro", "cuts in front of every block: feedback at block outputs, backprop inside",
          {"preset": "macro"}),
    Lever("sublayer", "cuts in front of every sublayer (attention, MLP)", {"preset": "sublayer"}),
    Lever("residual_init", "residual-branch output kernels scaled 1/sqrt(2L) at initialisation",
          {"residual_init": "depth"}),
    Lever("error_hidden", "error taken before the head: on pre-LN blocks the residual stream "
          "then also carries the exact gradient (not pure DFA)", {"error_at": "hidden"}),
    Lever("post_ln", "post-LN blocks, feedback at block outputs (macro_out)",
          {"norm": "post", "preset": "macro_out"}),
)}



def with_lever(args: argparse.Namespace, name: str) -> argparse.Namespace:
  """``args`` with the lever's settings applied; ``a+b`` applies both levers (b's win).

  Examples:
    >>> args = argparse.Namespace(norm="pre", preset="after_ln", projector="gaussian",
    ...                           reuse=False)
    >>> combined = with_lever(args, "post_ln+reuse")
    >>> combined.norm, combined.preset, combined.reuse, args.reuse
    ('post', 'macro_out', True, False)
  """
  settings = {}
  for part in name.split("+"):
    if part not in LEVERS:
      raise SystemExit(f"lm_depth.py: unknown lever {part!r}; choose from {','.join(LEVERS)}, "
                       "or join several with +")
    settings.update(LEVERS[part].settings)
  return argparse.Namespace(**{**vars(args), **settings})


def through_opu(lever: str) -> bool:
  """Whether a (possibly joined, ``a+b``) lever sends the feedback through the simulated OPU."""
  return any(LEVERS[part].settings.get("projector") == "opu"
             for part in lever.split("+") if part in LEVERS)
