"""Choosing feedback points from outside a model."""

from __future__ import annotations

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


Selector = Union[type, Sequence[type], Callable[[nn.Module, tuple[str, ...]], bool]]

DEFAULT_FEEDBACK: tuple[type, ...] = (
    nn.Dense, nn.DenseGeneral, nn.Conv, nn.ConvTranspose, FeedbackPoint)


def make_selector(feedback: Selector | None, *, default: tuple[type, ...] = DEFAULT_FEEDBACK,
                  base: type = nn.Module) -> Callable[[Any, tuple[str, ...]], bool]:
  """Turns a ``feedback=`` argument into a predicate over (module, path).

  Args:
    feedback: None (``default``: every Dense, DenseGeneral, Conv,
      ConvTranspose and ``FeedbackPoint``), a module class, a tuple/list of
      classes, or a predicate ``(module, path) -> bool``.
    default: the classes selected when ``feedback`` is None.
    base: the module base class that given classes must derive from
      (``flax.linen.Module``, or ``flax.nnx.Module`` for dfax.nnx).

  Returns:
    A predicate telling whether a cut goes in front of a module call.
  """
  if feedback is None:
    feedback = default
  if isinstance(feedback, type):
    feedback = (feedback,)
  if isinstance(feedback, (tuple, list)):
    classes = tuple(feedback)
    bad = [c for c in classes if not (isinstance(c, type) and issubclass(c, base))]
    if bad:
      raise TypeError(
          f"dfax: feedback= got {bad!r}; give {base.__module__}.{base.__name__} classes "
          "(e.g. nn.Dense or your own Block), or a predicate (module, path) -> bool.")
    return lambda module, path: isinstance(module, classes)
  if callable(feedback):
    return feedback
  raise TypeError(
      f"dfax: feedback= must be a Module class, a tuple of classes or a "
      f"predicate (module, path) -> bool; got {feedback!r}.")


def by_name(*patterns: str) -> Callable[[nn.Module, tuple[str, ...]], bool]:
  """Selects modules whose '/'-joined path matches any of the glob patterns.

  Example::

    dfax.dfa_grad(loss_fn, feedback=dfax.by_name("*/mlp/Dense_0", "block_*"))
  """
  import fnmatch

  def predicate(module: Any, path: tuple[str, ...]) -> bool:
    name = "/".join(path)
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)

  return predicate
