"""Choosing feedback points from outside a model.

A ``feedback=`` argument is turned into a ``Selection``: a list of entries,
each a predicate over ``(module, path)`` and a side, ``"in"`` (cut the
module's inputs) or ``"out"`` (cut its outputs, ``dfax.after``). Entries are
kept apart so that an entry which makes no point can be named in an error.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any, Sequence, Union

import flax.linen as nn

from dfax.core.predicates import NORM_SUFFIXES, Predicate, by_name, is_norm_layer  # noqa: F401


class FeedbackPoint(nn.Module):
  """An explicit marker a model author may place: identity, plus a DFA cut.

  Outside ``dfax.dfa_grad`` it does nothing. Under ``dfa_grad`` the value
  passing through it becomes a feedback point whenever the ``feedback=``
  selection includes markers (the default does).

  Examples:
    >>> import jax, jax.numpy as jnp, dfax
    >>> class Net(nn.Module):
    ...   @nn.compact
    ...   def __call__(self, x):
    ...     x = nn.tanh(nn.Dense(64)(x))
    ...     x = dfax.FeedbackPoint(name="fb")(x)
    ...     return nn.Dense(10)(x)
    >>> x = jnp.ones((2, 5))
    >>> params = Net().init(jax.random.key(0), x)
    >>> loss_fn = lambda p: Net().apply(p, x).sum()
    >>> grads = dfax.dfa_grad(loss_fn, feedback=dfax.FeedbackPoint)(params)  # the marker only
    >>> grads["params"]["Dense_0"]["kernel"].shape
    (5, 64)
  """

  @nn.compact
  def __call__(self, x):
    return x


Selector = Union[type, Sequence[Any], Predicate, "After", None]

DEFAULT_FEEDBACK: tuple[type, ...] = (
    nn.Dense, nn.DenseGeneral, nn.Conv, nn.ConvTranspose, FeedbackPoint)


@dataclasses.dataclass(frozen=True)
class After:
  """Cut at the outputs of the selected modules instead of their inputs.

  Made by ``dfax.after``; may stand alone as ``feedback=`` or inside a tuple.
  """

  selector: Any


def after(selector: Any) -> After:
  """Cuts after the modules that ``selector`` picks (at their outputs).

  With a cut after every Transformer block, the embeddings train through the
  first block's backward and the last block from its own feedback: the layout
  of Launay et al. (2020), on any unmodified model.

  Args:
    selector: a Module class, a tuple of classes, or a predicate
      ``(module, path) -> bool``, as for ``feedback=``.

  Returns:
    A selection to pass as ``feedback=`` (alone or inside a tuple).

  Examples:
    >>> import flax.linen as nn, dfax
    >>> sel = dfax.after(nn.Dense)
    >>> sel.selector is nn.Dense
    True
  """
  if isinstance(selector, After):
    raise TypeError("dfax.after(dfax.after(...)): give the module selector once.")
  return After(selector)


@dataclasses.dataclass(frozen=True)
class Pooled:
  """Points whose tokens are not the output error's (an encoder's source tokens).

  Made by ``dfax.pooled`` and ``dfax.encoder_decoder``; may stand alone as
  ``feedback=`` or inside a tuple.
  """

  selector: Any
  token_ndim: int = 1
  within: Predicate | None = None


def pooled(selector: Any, *, token_ndim: int = 1) -> Pooled:
  """Marks the points ``selector`` makes as living on their own tokens, not the error's.

  DFA projects the output error token by token: a point of shape
  ``(batch, tokens, d)`` gets, at token ``i``, a projection of the error at
  token ``i``. That pairing only means something where the point is on the
  output's tokens (a decoder). An encoder's points are on the *source*
  tokens; their pairing with target tokens would be arbitrary, even when the
  two lengths happen to be equal. A pooled point instead receives the error
  averaged over its ``token_ndim`` token dims, projected per example (with
  the point's own random matrix, as any point) and broadcast over the point's
  own token positions. Its shape must be ``example dims + token_ndim own
  token dims (any length) + features``.

  For T5/BART-style models use ``dfax.encoder_decoder``, which pools exactly
  the points inside the encoder.

  Args:
    selector: as for ``feedback=``: a Module class, a tuple, a predicate
      ``(module, path) -> bool`` or ``dfax.after(...)``.
    token_ndim: how many token dims the error has (and the point has of its
      own) in front of the feature dims; 1 for sequences.

  Returns:
    A selection to pass as ``feedback=`` (alone or inside a tuple).

  Examples:
    >>> import flax.linen as nn, dfax
    >>> sel = dfax.pooled(dfax.after(dfax.is_norm_layer))
    >>> sel.token_ndim
    1
  """
  if isinstance(selector, Pooled):
    raise TypeError("dfax.pooled(dfax.pooled(...)): give the module selector once.")
  if not isinstance(token_ndim, int) or token_ndim < 1:
    raise ValueError(f"dfax.pooled: token_ndim must be an int >= 1, got {token_ndim!r}.")
  return Pooled(selector, token_ndim)


def in_module_named(name: str) -> Predicate:
  """A predicate: the module's path has a component equal to ``name`` (it is inside it).

  Args:
    name: a module name such as ``"encoder"``.

  Returns:
    ``(module, path) -> bool``.

  Examples:
    >>> inside = in_module_named("encoder")
    >>> inside(None, ("model", "encoder", "layers", "0")), inside(None, ("decoder", "block"))
    (True, False)
  """

  def predicate(module: Any, path: tuple[str, ...]) -> bool:
    del module
    return any(str(p) == name for p in path)

  predicate.__qualname__ = f"in_module_named({name!r})"
  return predicate


def encoder_decoder(selector: Any, *, encoder: str | Predicate = "encoder") -> tuple:
  """A selection for encoder–decoders: points in the encoder pooled, the rest per token.

  The error lives on the decoder's (target) tokens. Points that ``selector``
  makes inside the encoder are pooled (``dfax.pooled``): each receives the
  target-token-averaged error, projected per example and broadcast over its
  source tokens, whatever the two lengths are. Points elsewhere (decoder,
  head) are paired with the error token by token as usual.

  The recipe for HF's Flax T5 and BART (and mBART, Marian, Pegasus, whose
  encoders are also named ``encoder``):
  ``dfax.encoder_decoder(dfax.after(dfax.is_norm_layer))``. Each norm layer's
  output there is on its own stack's tokens. A selection that cuts the
  *inputs* of the decoder's cross-attention key/value layers would make
  decoder points that carry the encoder's output (source tokens): pass an
  ``encoder=`` predicate that also covers them, or cut after norm layers.

  Args:
    selector: as for ``feedback=`` (a class, predicate, tuple or ``dfax.after``).
    encoder: the encoder's module name (a module is in the encoder when one
      of its path components equals it), or a predicate ``(module, path) -> bool``.

  Returns:
    A selection to pass as ``feedback=``: two parts, the encoder's (pooled)
    and the rest (paired). On a model without an encoder nothing is pooled.

  Examples:
    >>> import dfax
    >>> feedback = dfax.encoder_decoder(dfax.after(dfax.is_norm_layer))
    >>> [part.token_ndim for part in feedback]
    [1, 0]
  """
  inside = in_module_named(encoder) if isinstance(encoder, str) else encoder
  if not callable(inside):
    raise TypeError(f"dfax.encoder_decoder: encoder= must be a module name or a predicate "
                    f"(module, path) -> bool, got {encoder!r}.")
  outside = lambda module, path: not inside(module, path)
  return (Pooled(selector, 1, within=inside), Pooled(selector, 0, within=outside))


@dataclasses.dataclass(frozen=True)
class Exactly:
  """Modules trained by exact backprop inside a DFA model. Made by ``dfax.exactly``."""
  selector: Any


def exactly(selector: Any) -> Exactly:
  """The modules ``selector`` picks train by exact backprop: the hybrid method, by name.

  Put it in ``feedback=`` beside the cuts. Each picked module call runs as
  inside ``dfax.exact()`` (no cut, no feedback, the true cotangent passes).
  Its inputs that no other picked module produced are feedback points: the
  exact gradient stops there instead of reaching the DFA-trained modules
  along an uncut path (a residual stream), and what produced those inputs
  (the last DFA-trained layers) gets the error's projection there, through
  a parameter-free normalisation as at ``dfax.exact_boundary``. So pick
  modules that feed one another directly, as the blocks of a stack and the
  final LayerNorm do: a function applied between two picked modules (an
  activation) makes the second one's input such a point. For the last K
  blocks of a stack pick them and what follows them (the final LayerNorm);
  for dfax's own scanned models use ``bp_blocks`` (``TransformerConfig``,
  ``ViTConfig``) instead, since the layers of one ``nn.scan`` are one
  module.

  Args:
    selector: a module class, a predicate ``(module, path) -> bool`` such as
      ``dfax.by_name(...)``, or a tuple of these.

  Returns:
    An ``Exactly`` to put in ``feedback=``.

  Examples:
    HF GPT-2 (12 blocks ``transformer/h/0`` .. ``11``, final LayerNorm
    ``transformer/ln_f``), its last 2 blocks by backprop, the rest by DFA:

    >>> import dfax
    >>> feedback = (dfax.after(dfax.is_norm_layer),
    ...             dfax.exactly(dfax.by_name("transformer/h/10", "transformer/h/11",
    ...                                       "transformer/ln_f")))
  """
  return Exactly(selector)


@dataclasses.dataclass(frozen=True)
class Entry:
  """One part of a selection: what it picks, on which side, its name and its pooling."""

  predicate: Predicate
  side: str  # "in" or "out"
  label: str
  pooled: int = 0  # PointSpec.pooled of the points this entry makes


@dataclasses.dataclass(frozen=True)
class Selection:
  """A parsed ``feedback=`` argument.

  Attributes:
    entries: the parts, in the order given.
    explicit: whether the user chose the entries (not the default); each
      explicit entry must make at least one point.
  """

  entries: tuple[Entry, ...]
  explicit: bool
  exact: tuple[Entry, ...] = ()  # dfax.exactly(...): modules trained by exact backprop

  def is_exact(self, module: Any, path: tuple[str, ...]) -> bool:
    """Whether a ``dfax.exactly`` entry picks this call."""
    return any(entry.predicate(module, path) for entry in self.exact)

  def match(self, module: Any, path: tuple[str, ...]) -> tuple[list[int], list[int]]:
    """The indices of the entries that cut this call's inputs and outputs."""
    ins, outs = [], []
    for i, entry in enumerate(self.entries):
      if entry.predicate(module, path):
        (ins if entry.side == "in" else outs).append(i)
    return ins, outs


def _class_label(cls: type) -> str:
  return f"{cls.__module__}.{cls.__qualname__}"


def _entries(item: Any, side: str, base: type) -> list[Entry]:
  if isinstance(item, Pooled):
    entries = _entries(item.selector, side, base)
    within = item.within
    if within is not None:
      where = "encoder" if item.token_ndim else "outside the encoder"
      entries = [dataclasses.replace(
          e, predicate=lambda m, p, f=e.predicate: within(m, p) and f(m, p),
          label=f"{e.label} ({where})") for e in entries]
    elif any(e.pooled for e in entries):
      raise TypeError("dfax.pooled(...) cannot be nested.")
    return [dataclasses.replace(e, pooled=item.token_ndim) for e in entries]
  if isinstance(item, After):
    if side == "out":
      raise TypeError("dfax: dfax.after() cannot be nested.")
    return _entries(item.selector, "out", base)
  if isinstance(item, type):
    if not issubclass(item, base):
      raise TypeError(
          f"dfax: feedback= got {item!r}, which is not a {base.__module__}."
          f"{base.__name__} class; give Module classes (e.g. nn.Dense or your own "
          "Block), a predicate (module, path) -> bool, or dfax.after(...).")
    return [Entry(lambda m, p, c=item: isinstance(m, c), side, _class_label(item))]
  if isinstance(item, (tuple, list)):
    return [e for sub in item for e in _entries(sub, side, base)]
  if isinstance(item, (nn.Module,)) or _is_nnx_module(item):
    raise TypeError(
        f"dfax: feedback= got a module instance ({type(item).__name__}(...)); give its "
        f"class instead: feedback={type(item).__name__}, or a predicate "
        "(module, path) -> bool to pick particular instances.")
  if callable(item):
    label = getattr(item, "__qualname__", None) or repr(item)
    return [Entry(item, side, f"predicate {label}")]
  raise TypeError(
      "dfax: feedback= must be a Module class, a tuple of classes, a predicate "
      f"(module, path) -> bool or dfax.after(...); got {item!r}.")


def _is_nnx_module(x: Any) -> bool:
  nnx = sys.modules.get("flax.nnx")  # only loaded if the user uses NNX
  return nnx is not None and isinstance(x, nnx.Module)


def make_selection(feedback: Selector, *, default: tuple[type, ...] = DEFAULT_FEEDBACK,
                   base: type = nn.Module) -> Selection:
  """Parses a ``feedback=`` argument.

  Args:
    feedback: None (``default``), a module class, a predicate
      ``(module, path) -> bool``, ``dfax.after(...)``, or a tuple/list mixing
      them.
    default: the classes selected when ``feedback`` is None.
    base: the module base class that given classes must derive from
      (``flax.linen.Module``, or ``flax.nnx.Module`` for dfax.nnx).

  Returns:
    The ``Selection``.

  Examples:
    >>> import flax.linen as nn
    >>> sel = make_selection((nn.Dense, after(nn.Conv)))
    >>> [(e.side, e.label) for e in sel.entries]
    [('in', 'flax.linen.linear.Dense'), ('out', 'flax.linen.linear.Conv')]
  """
  explicit = feedback is not None
  items = (default if feedback is None else feedback)
  items = list(items) if isinstance(items, (tuple, list)) else [items]
  exact = [e for item in items if isinstance(item, Exactly)
           for e in _entries(item.selector, "in", base)]
  entries = _entries([item for item in items if not isinstance(item, Exactly)], "in", base)
  if not entries:
    raise ValueError("dfax: feedback= selects nothing (an empty tuple).")
  return Selection(tuple(entries), explicit, tuple(exact))
