"""Where the output error is taken when a model returns a pytree.

A model may return a bare array, or a dict, tuple, ``flax.struct`` dataclass
or HuggingFace ``ModelOutput``. The error is taken at one of its floating
leaves: by default the first, or the one ``output=`` names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, Union

import jax
import jax.numpy as jnp

OutputSelector = Union[None, str, Callable[[Any], Any]]


def is_float_array(x: Any) -> bool:
  """Whether ``x`` is a JAX array (or tracer) of a floating or complex dtype."""
  return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jnp.inexact)


def map_float_leaves(tree: Any, side: str, fn: Callable[[Any, str], Any],
                     sep: str = "") -> tuple[Any, int]:
  """Applies ``fn(leaf, name)`` to the floating leaves of ``tree``.

  A single floating leaf is named ``side`` ("in" or "out"); several are
  ``side0``, ``side1``, ... in flattening order (``side/0``, ... with
  ``sep="/"``).

  Returns:
    The tree with those leaves replaced, and how many there were.
  """
  leaves, treedef = jax.tree_util.tree_flatten(tree)
  floats = [i for i, x in enumerate(leaves) if is_float_array(x)]
  for k, i in enumerate(floats):
    leaves[i] = fn(leaves[i], side if len(floats) == 1 else f"{side}{sep}{k}")
  return jax.tree_util.tree_unflatten(treedef, leaves), len(floats)


def check_output_selector(output: OutputSelector) -> None:
  """Raises a TypeError naming the fix when ``output=`` is not usable."""
  if output is None or isinstance(output, str) or callable(output):
    return
  raise TypeError(
      "dfax: output= must be None (the first floating leaf), a key or attribute "
      f"name such as 'logits', or a function from the model output to an array; "
      f"got {output!r}.")


def _named(out: Any, name: str) -> Any:
  if isinstance(out, Mapping) and name in out:
    return out[name]
  if hasattr(out, name):
    return getattr(out, name)
  keys = list(out.keys()) if isinstance(out, Mapping) else [
      k for k in dir(out) if not k.startswith("_")]
  raise KeyError(f"dfax: output={name!r}, but the model output "
                 f"({type(out).__name__}) has no such key or attribute; it has {keys}.")


def select_output(out: Any, output: OutputSelector, owner: str) -> tuple[int, list, Any]:
  """Finds the leaf of ``out`` where the error is taken.

  Args:
    out: the outermost module's output.
    output: None, a key/attribute name, or a function ``out -> array``.
    owner: the module's class name, for messages.

  Returns:
    ``(index, leaves, treedef)``: the chosen leaf is ``leaves[index]``.

  Raises:
    TypeError / KeyError: when no floating leaf can be chosen, naming the fix.

  Examples:
    >>> import jax.numpy as jnp
    >>> i, leaves, _ = select_output({"logits": jnp.ones(2), "ids": jnp.zeros(2, int)},
    ...                              None, "Net")
    >>> leaves[i].dtype
    dtype('float32')
  """
  leaves, treedef = jax.tree_util.tree_flatten(out)
  if output is None:
    for i, leaf in enumerate(leaves):
      if is_float_array(leaf):
        return i, leaves, treedef
    raise TypeError(
        f"dfax: the model's output (from {owner}) is a {type(out).__name__} with no "
        "floating-point array, so there is no error to project. Return the logits, "
        "or name them with output= (a key, an attribute or a function of the output).")
  target = _named(out, output) if isinstance(output, str) else output(out)
  for i, leaf in enumerate(leaves):
    if leaf is target:
      if not is_float_array(leaf):
        raise TypeError(f"dfax: output={output!r} picks a {type(leaf).__name__} of dtype "
                        f"{getattr(leaf, 'dtype', None)}, not a floating-point array.")
      return i, leaves, treedef
  raise TypeError(
      f"dfax: output={output!r} did not return one of the model output's leaves (it "
      f"returned a {type(target).__name__}). The error must be taken at a value the loss "
      "uses as it is: pick a leaf (e.g. output='logits' or lambda out: out[0]), not "
      "a new array computed from it.")
