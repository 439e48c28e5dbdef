"""Predicates over ``(module, path)`` for ``feedback=``: by path glob, and norm layers by role."""

from __future__ import annotations

import re
from typing import Any, Callable

Predicate = Callable[[Any, tuple[str, ...]], bool]


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

  Examples:
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


# Class-name endings of per-example normalisation layers (see is_norm_layer).
NORM_SUFFIXES: tuple[str, ...] = ("LayerNorm", "RMSNorm", "GroupNorm", "InstanceNorm")


def is_norm_layer(module: Any, path: tuple[str, ...] = ()) -> bool:
  """Whether ``module`` is a per-example normalisation layer, by its role.

  The rule: the module's class, or one of its base classes, has a name that
  ends with ``LayerNorm``, ``RMSNorm``, ``GroupNorm`` or ``InstanceNorm``
  (case-sensitive). That covers Flax's ``nn.LayerNorm``, ``nn.RMSNorm``,
  ``nn.GroupNorm`` and ``nn.InstanceNorm``, their NNX counterparts, and the
  norm classes models bring along, e.g. HuggingFace's ``FlaxLlamaRMSNorm``,
  ``FlaxMistralRMSNorm``, ``FlaxGemmaRMSNorm`` and ``FlaxT5LayerNorm``. These
  layers normalise each example (each token) over its own features, so their
  output is a normalised copy of the stream with the batch and token dims of
  the output error.

  Not selected: ``BatchNorm`` (in training its output mixes the statistics of
  the whole batch; select it by class, ``dfax.after(nn.BatchNorm)``, if you
  mean to), ``WeightNorm`` and ``SpectralNorm`` (they normalise a wrapped
  layer's weights, not activations), and norm classes named otherwise
  (``LayerNorm2d``, ``Normalize``): add them by class or with
  ``dfax.by_name``.

  Args:
    module: a linen or NNX module (or any object: only its class is looked at).
    path: the module's path; unused, so that this is a ``feedback=`` predicate.

  Returns:
    True for a normalisation layer under the rule above.

  Examples:
    >>> import flax.linen as nn, dfax
    >>> dfax.is_norm_layer(nn.RMSNorm()), dfax.is_norm_layer(nn.BatchNorm())
    (True, False)
    >>> feedback = dfax.after(dfax.is_norm_layer)  # cut after every norm layer
  """
  del path
  return any(c.__name__.endswith(NORM_SUFFIXES) for c in type(module).__mro__)
