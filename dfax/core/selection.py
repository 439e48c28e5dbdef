"""Choosing feedback points from outside a model.

A ``feedback=`` argument is turned into a ``Selection``: a list of entries,
each a predicate over ``(module, path)`` and a side, ``"in"`` (cut the
module's inputs) or ``"out"`` (cut its outputs, ``dfax.after``). Entries are
kept apart so that an entry which makes no point can be named in an error.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from typing import Any, Callable, Sequence, Union

import flax.linen as nn


class FeedbackPoint(nn.Module):
  """An explicit marker a model author may place: identity, plus a DFA cut.

  Outside ``dfax.dfa_grad`` it does nothing. Under ``dfa_grad`` the value
  passing through it becomes a feedback point whenever the ``feedback=``
  selection includes markers (the default does).

  Example::

    class Net(nn.Module):
      @nn.compact
      def __call__(self, x):
        x = nn.tanh(nn.Dense(64)(x))
        x = dfax.FeedbackPoint(name="fb")(x)
        return nn.Dense(10)(x)
  """

  @nn.compact
  def __call__(self, x):
    return x


Predicate = Callable[[Any, tuple[str, ...]], bool]
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

  Example:

    >>> import flax.linen as nn, dfax
    >>> sel = dfax.after(nn.Dense)
    >>> sel.selector is nn.Dense
    True
  """
  if isinstance(selector, After):
    raise TypeError("dfax.after(dfax.after(...)): give the module selector once.")
  return After(selector)


@dataclasses.dataclass(frozen=True)
class Entry:
  """One part of a selection: what it picks, on which side, and its name."""

  predicate: Predicate
  side: str  # "in" or "out"
  label: str


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

  Example:

    >>> import flax.linen as nn
    >>> sel = make_selection((nn.Dense, after(nn.Conv)))
    >>> [(e.side, e.label) for e in sel.entries]
    [('in', 'flax.linen.linear.Dense'), ('out', 'flax.linen.linear.Conv')]
  """
  explicit = feedback is not None
  entries = _entries(default if feedback is None else feedback, "in", base)
  if not entries:
    raise ValueError("dfax: feedback= selects nothing (an empty tuple).")
  return Selection(tuple(entries), explicit)


def make_selector(feedback: Selector, **kwargs) -> Predicate:
  """A single predicate over (module, path): whether any entry selects it.

  Args:
    feedback: as for ``make_selection``.
    **kwargs: ``default`` and ``base``, as for ``make_selection``.

  Returns:
    ``(module, path) -> bool``.
  """
  selection = make_selection(feedback, **kwargs)
  return lambda module, path: any(selection.match(module, path))


def _glob_to_regex(pattern: str) -> str:
  """``*`` and ``?`` stay within one path level, ``**`` crosses levels."""
  out, i = [], 0
  while i < len(pattern):
    if pattern.startswith("**/", i):
      out.append("(?:[^/]+/)*")
      i += 3
    elif pattern.startswith("**", i):
      out.append(".*")
      i += 2
    elif pattern[i] == "*":
      out.append("[^/]*")
      i += 1
    elif pattern[i] == "?":
      out.append("[^/]")
      i += 1
    else:
      out.append(re.escape(pattern[i]))
      i += 1
  return "".join(out)


def by_name(*patterns: str) -> Predicate:
  """Selects modules whose '/'-joined path matches any of the glob patterns.

  ``*`` and ``?`` match within one path level; ``**`` matches across levels
  (``"**/mlp"`` is every ``mlp`` at any depth, ``"**"`` everything), as in
  path globs.

  Args:
    *patterns: globs over module paths such as ``"block_*"``.

  Returns:
    A predicate ``(module, path) -> bool`` for ``feedback=``.

  Example:

    >>> pick = by_name("block_*")
    >>> pick(None, ("block_0",)), pick(None, ("block_0", "mlp"))
    (True, False)
    >>> by_name("**/mlp")(None, ("block_0", "mlp"))
    True
  """
  if not patterns or not all(isinstance(p, str) for p in patterns):
    raise TypeError(f"dfax.by_name takes glob strings, got {patterns!r}.")
  compiled = [re.compile(_glob_to_regex(p)) for p in patterns]

  def predicate(module: Any, path: tuple[str, ...]) -> bool:
    del module
    name = "/".join(str(p) for p in path)
    return any(c.fullmatch(name) for c in compiled)

  predicate.__qualname__ = f"by_name{patterns!r}"
  return predicate
