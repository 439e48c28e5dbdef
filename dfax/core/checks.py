"""Argument and result checks shared by ``dfax.dfa_grad`` and ``dfax.nnx``.

Each raises an error that names the fix, before any tracing where possible.
"""

from __future__ import annotations

import inspect
from typing import Any, Sequence

import jax.numpy as jnp


def check_argnums(argnums: Any) -> tuple[int, ...]:
  """Validates ``argnums`` like jax.grad does, with a clearer message.

  Args:
    argnums: an int or a sequence of ints.

  Returns:
    The argnums as a tuple.

  Examples:
    >>> check_argnums((0, 2))
    (0, 2)
  """
  nums = (argnums,) if isinstance(argnums, int) and not isinstance(argnums, bool) else argnums
  if not isinstance(nums, (tuple, list)) or not nums or not all(
      isinstance(n, int) and not isinstance(n, bool) for n in nums):
    raise TypeError(
        f"dfax: argnums must be an int or a tuple of ints, as for jax.grad; got "
        f"{argnums!r}" + (f" (write argnums={int(argnums)})" if isinstance(argnums, str)
                          and argnums.strip().isdigit() else "") + ".")
  return tuple(nums)


def check_argnums_in_range(argnums: Sequence[int], num_args: int) -> None:
  """Raises ValueError if an argnum does not name a positional argument."""
  for n in argnums:
    if not -num_args <= n < num_args:
      raise ValueError(
          f"dfax: argnums={argnums[0] if len(argnums) == 1 else tuple(argnums)!r} but the function was called with "
          f"{num_args} positional arguments.")


def check_projector(projector: Any) -> None:
  """Raises TypeError if ``projector`` is not ``(error, points) -> cotangents``.

  A common slip is passing the factory (``dfax.projectors.gaussian``)
  instead of the projector it makes (``dfax.projectors.gaussian(key)``).
  """
  if not callable(projector):
    raise TypeError(f"dfax: projector= must be a function (error, points) -> "
                    f"cotangents; got {projector!r}.")
  try:
    signature = inspect.signature(projector)
  except (TypeError, ValueError):  # builtins and some C callables
    return
  try:
    signature.bind(None, None)
  except TypeError:
    name = getattr(projector, "__name__", type(projector).__name__)
    params = list(signature.parameters)
    hint = (f"call it first: projector=dfax.projectors.{name}(jax.random.key(0))"
            if params[:1] == ["key"] else
            f"call it first: projector={name}()" if not params else
            "give a function of (error, points)")
    raise TypeError(
        f"dfax: projector={name} takes ({', '.join(params)}), but a projector is called "
        f"as projector(error, points). It looks like a projector factory: {hint}.") from None


def check_loss(out: Any, has_aux: bool) -> None:
  """Checks the loss function's result like jax.grad, naming the fix."""
  if has_aux:
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
      raise TypeError(
          "dfax: has_aux=True needs the loss function to return a pair "
          f"(loss, aux); it returned {type(out).__name__}.")
    loss = out[0]
  else:
    if isinstance(out, (tuple, list)):
      raise TypeError(
          f"dfax: the loss function returned a {type(out).__name__} of {len(out)} "
          "values, not a scalar. If it returns (loss, aux), pass has_aux=True, as for "
          "jax.grad.")
    loss = out
  if not hasattr(loss, "shape") and not isinstance(loss, (int, float)):
    raise TypeError(f"dfax: the loss function must return a scalar array, got "
                    f"{type(loss).__name__}.")
  shape = jnp.shape(loss)
  if shape != ():
    raise TypeError(
        f"dfax: the loss function must return a scalar, got shape {shape}. "
        "Reduce it (e.g. loss.mean()), or return (loss, aux) with has_aux=True.")
  if not jnp.issubdtype(jnp.result_type(loss), jnp.floating):
    raise TypeError(f"dfax: the loss must be a real floating-point scalar, got dtype "
                    f"{jnp.result_type(loss)}.")


def check_holomorphic(holomorphic: bool) -> None:
  """DFA projects a real error; holomorphic differentiation is refused by name."""
  if holomorphic:
    raise NotImplementedError(
        "dfax: holomorphic=True is not supported: DFA projects a real output error "
        "through real random matrices. Use jax.grad(..., holomorphic=True) instead.")
