"""``dfa_grad`` and ``dfa_value_and_grad``: jax.grad with DFA at feedback points."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from typing import Any, Callable, Sequence

import jax
from flax import linen as nn

from dfax.core import lifted
from dfax.core.checks import (check_argnums, check_argnums_in_range, check_holomorphic,
                              check_loss, check_projector)
from dfax.core.outputs import OutputSelector, check_output_selector
from dfax.core.recorder import Recorder
from dfax.core.selection import DEFAULT_FEEDBACK, Selector, make_selection
from dfax.core.tap import Projector

_DEFAULT_SEED = 0


def default_projector() -> Projector:
  """``dfax.projectors.gaussian(jax.random.key(0))``, the default projector."""
  from dfax.projectors.dense import gaussian  # the core only needs the protocol
  return gaussian(jax.random.key(_DEFAULT_SEED))


def _reason(has_float: bool) -> str:
  return ("its inputs do not depend on the differentiated arguments (raw data, token "
          "ids, masks)" if has_float else "it has no floating-point inputs/outputs")


def check_points(recorder: Recorder, api: str = "dfax") -> None:
  """Refuses a trace in which DFA would silently be backprop.

  Raises ValueError when no module was selected, when no selected module
  made a feedback point, or when one explicit ``feedback=`` entry made none.

  Args:
    recorder: the trace's recorder.
    api: "dfax" or "dfax.nnx", for messages.
  """
  entries = recorder.selection.entries
  if not recorder.selected:
    seen = ", ".join(f"{k} x{v}" for k, v in sorted(recorder.modules_seen.items()))
    raise ValueError(
        f"{api}: no feedback points found. Modules called: {seen or 'none'}. Select "
        "some with feedback=: a module class (e.g. your Block class), a tuple of "
        "classes, a predicate (module, path) -> bool (e.g. dfax.by_name('**/mlp')), "
        "dfax.after(Block) to cut after blocks, or place FeedbackPoint markers.")
  made = recorder.points_by_module()

  def describe(labels):
    return "; ".join(f"{label} ({recorder.selected[label][0]}): " + (
        "its output is the model's output, where the error is taken (a cut there is left "
        "out)" if label in recorder.at_output else _reason(recorder.selected[label][2]))
        for label in labels[:8])

  if not any(made.values()):
    labels = sorted(recorder.selected)
    raise ValueError(
        f"{api}: the selected modules made no feedback point, so every gradient would "
        f"be plain backprop. Selected: {describe(labels)}. Select modules whose "
        "inputs are computed from the parameters (e.g. the blocks, not the embedding "
        "fed token ids), or cut after a module with dfax.after(...).")
  outputs = [t.owner for t in recorder.taps if t.made_points()]
  if len(outputs) > 1 and not recorder.multiple_outputs:
    raise ValueError(
        f"{api}: the loss applied {len(outputs)} top-level modules that made feedback points "
        f"({', '.join(outputs)}); each would train from the error at its own output. Wrap "
        "the calls that should train by exact backprop (e.g. a head applied after the body) "
        "in `with dfax.exact():`, or pass multiple_outputs=True if each output should carry "
        "its own error.")
  if not recorder.selection.explicit:
    return
  for i, entry in enumerate(entries):
    labels = sorted(lb for lb, info in recorder.selected.items() if i in info[1])
    if labels and not any(made[lb] for lb in labels):
      raise ValueError(
          f"{api}: feedback= entry {entry.label} (cut at the {entry.side}puts) made no "
          f"feedback point: {describe(labels)}. Drop it from feedback=, or use "
          "dfax.after(...) to cut at the module's outputs instead.")


@dataclasses.dataclass(frozen=True)
class FrontEnd:
  """How one Flax API reaches the one DFA transform (``value_and_grad_with``).

  ``dfax.dfa_value_and_grad`` (linen, HuggingFace) and
  ``dfax.nnx.dfa_value_and_grad`` are this transform with their front end,
  as Flax NNX keeps one general function under ``grad`` and ``value_and_grad``.

  Attributes:
    api: the name in messages, ``"dfax"`` or ``"dfax.nnx"``.
    route: ``(recorder, args, kwargs) -> context manager`` that sends the
      module calls of the loss to ``recorder.intercept`` while it runs (and
      may set ``recorder.extra_points``). Its ``__exit__`` may raise to refuse
      a trace.
    differentiate: ``(traced, argnums, has_aux, allow_int) -> fn`` returning
      ``(value, grads)``: ``jax.value_and_grad`` or ``nnx.value_and_grad``.
    positions: ``argnums -> positions`` of the differentiated arguments, for
      the range check.
    no_module: the error when the loss called no module of this API.
    default_feedback: what ``feedback=None`` selects.
    base: the module base class ``feedback=`` classes must derive from.
  """

  api: str
  route: Callable[..., Any]
  differentiate: Callable[..., Callable[..., Any]]
  positions: Callable[[Any], Sequence[int]]
  no_module: str
  default_feedback: Any = DEFAULT_FEEDBACK
  base: type = nn.Module


def value_and_grad_with(front_end: FrontEnd, fun: Callable[..., Any], argnums: Any = 0,
                        has_aux: bool = False, holomorphic: bool = False,
                        allow_int: bool = False, *, projector: Projector | None = None,
                        feedback: Selector = None, output: OutputSelector = None,
                        multiple_outputs: bool = False) -> Callable[..., Any]:
  """The DFA transform behind every front end; see ``dfa_value_and_grad`` for the arguments."""
  check_holomorphic(holomorphic)
  projector = projector if projector is not None else default_projector()
  check_projector(projector)
  check_output_selector(output)
  selection = make_selection(feedback, default=front_end.default_feedback, base=front_end.base)

  def traced(*args, **kwargs):
    recorder = Recorder(selection, projector, output, multiple_outputs)
    with front_end.route(recorder, args, kwargs):
      out = fun(*args, **kwargs)
    check_loss(out, has_aux)
    if not recorder.modules_seen:
      raise ValueError(front_end.no_module)
    check_points(recorder, front_end.api)
    return out

  value_and_grad = front_end.differentiate(functools.wraps(fun)(traced), argnums, has_aux,
                                           allow_int)

  @functools.wraps(fun)
  def value_and_grad_fn(*args, **kwargs):
    check_argnums_in_range(front_end.positions(argnums), len(args))
    return value_and_grad(*args, **kwargs)

  return value_and_grad_fn


@contextlib.contextmanager
def _linen_route(recorder: Recorder, args, kwargs):
  del args, kwargs
  with lifted.routed(recorder), nn.intercept_methods(recorder):
    yield


def _linen_differentiate(traced, argnums, has_aux, allow_int):
  return jax.value_and_grad(traced, argnums if isinstance(argnums, int) else tuple(argnums),
                            has_aux, allow_int=allow_int)


LINEN = FrontEnd(
    api="dfax", route=_linen_route, differentiate=_linen_differentiate,
    positions=check_argnums,
    no_module=("dfax: the loss function called no Flax linen module, so there is no model "
               "output to take the error from. Call model.apply(params, ...) inside the loss "
               "function (for flax.nnx models use dfax.nnx)."))


def dfa_value_and_grad(
    fun: Callable[..., Any],
    argnums: int | Sequence[int] = 0,
    has_aux: bool = False,
    holomorphic: bool = False,
    allow_int: bool = False,
    *,
    projector: Projector | None = None,
    feedback: Selector = None,
    output: OutputSelector = None,
    multiple_outputs: bool = False,
) -> Callable[..., Any]:
  """Like ``jax.value_and_grad``, with DFA gradients for hidden segments.

  The loss function is an ordinary one that calls ``model.apply(...)`` of an
  unmodified Flax linen model (HuggingFace Flax models included). A cut is
  placed in front of every selected module (behind it with ``dfax.after``);
  the segment after the last cut gets the true output error; the value at
  each cut gets ``projector(error, points)[k]`` as cotangent, which
  back-propagates only down to the previous cut.

  Where the error is taken: at the output of the top-level module call
  (``model.apply``) inside the loss, at its first floating leaf or the one
  ``output=`` names. A loss that makes more than one top-level call with
  feedback points is refused unless ``multiple_outputs=True`` (each call then
  sends its points the error at its own output); calls inside
  ``with dfax.exact():`` are no output and train by exact backprop.

  No cut at the output: a cut whose value is the model output itself (the
  outermost module's output, or the leaf the error is taken at), such as the
  output Dense under ``dfax.after(nn.Dense)``, is left out, so the output
  layer always trains on the true error; a selection whose only cut was
  there makes no point and is refused.

  Args:
    fun: loss function, ``fun(*args) -> loss`` or ``-> (loss, aux)``.
    argnums: which positional argument(s) to differentiate, as in jax.grad.
    has_aux: whether ``fun`` returns ``(loss, aux)``.
    holomorphic: refused (DFA's error and matrices are real).
    allow_int: as in jax.grad: integer arguments get float0 gradients.
    projector: ``projector(error, points) -> cotangents``; default
      ``dfax.projectors.gaussian(jax.random.key(0))``.
    feedback: where to cut: a Module class, a predicate ``(module, path) ->
      bool`` (e.g. ``dfax.by_name(...)``, ``dfax.is_norm_layer``),
      ``dfax.after(...)``, or a tuple of these; default in front of every
      Dense, DenseGeneral, Conv, ConvTranspose and ``dfax.FeedbackPoint``.
    output: when the model returns a pytree (dict, dataclass, HF
      ``ModelOutput``), the leaf the error is taken at: a key or attribute
      name, or a function of the output; default the first floating leaf.
    multiple_outputs: allow more than one top-level module call with
      feedback points in one loss, each an output with its own error.

  Returns:
    A function with the signature of ``fun`` returning ``(value, grads)``,
    with ``value`` and ``grads`` structured exactly as by jax.value_and_grad.
    The error is ``dL/dy`` at the output ``y`` of the top-level module call;
    the segment after the last cut (and every call inside ``dfax.exact()``)
    gets its exact gradient, every other segment the projection of that
    error at its cut.

  Raises:
    ValueError: when no module makes a feedback point (DFA would be
      backprop), or more than one top-level call does without
      ``multiple_outputs=True``.

  Examples:
    >>> import jax, jax.numpy as jnp, flax.linen as nn, dfax
    >>> model = nn.Sequential([nn.Dense(8), nn.tanh, nn.Dense(3)])
    >>> x = jnp.ones((4, 5))
    >>> params = model.init(jax.random.key(0), x)
    >>> loss_fn = lambda p: model.apply(p, x).sum()
    >>> loss, grads = dfax.dfa_value_and_grad(loss_fn)(params)
    >>> jax.tree.structure(grads) == jax.tree.structure(params)
    True
    >>> # after every Dense: the output Dense's cut is left out, it trains exactly
    >>> after = dfax.dfa_grad(loss_fn, feedback=dfax.after(nn.Dense))(params)
    >>> bool(jnp.allclose(after["params"]["layers_2"]["kernel"],
    ...                   jax.grad(loss_fn)(params)["params"]["layers_2"]["kernel"]))
    True
  """
  check_argnums(argnums)
  return value_and_grad_with(LINEN, fun, argnums, has_aux, holomorphic, allow_int,
                             projector=projector, feedback=feedback, output=output,
                             multiple_outputs=multiple_outputs)


def dfa_grad(
    fun: Callable[..., Any],
    argnums: int | Sequence[int] = 0,
    has_aux: bool = False,
    holomorphic: bool = False,
    allow_int: bool = False,
    *,
    projector: Projector | None = None,
    feedback: Selector = None,
    output: OutputSelector = None,
    multiple_outputs: bool = False,
) -> Callable[..., Any]:
  """Like ``jax.grad``, with DFA gradients for hidden segments.

  Takes the arguments of ``dfa_value_and_grad`` (see there for each).

  The error is ``dL/dy`` at the output ``y`` of the loss's top-level module
  call (``model.apply``); a loss with more than one top-level call that makes
  feedback points is refused unless ``multiple_outputs=True``, and calls
  inside ``with dfax.exact():`` train by exact backprop. No cut is made at
  the model output itself: ``dfax.after(nn.Dense)`` on an MLP cuts after the
  hidden Dense layers only.

  Returns:
    A function returning the gradients (``(grads, aux)`` with has_aux),
    structured as ``jax.grad``'s: the segment after the last cut gets its
    exact gradient, every other segment the projection of the error at its
    cut, back-propagated down to the previous cut.

  Examples:
    >>> import jax, jax.numpy as jnp, flax.linen as nn, dfax
    >>> model = nn.Sequential([nn.Dense(8), nn.tanh, nn.Dense(3)])
    >>> x = jnp.ones((4, 5))
    >>> params = model.init(jax.random.key(0), x)
    >>> loss_fn = lambda p: model.apply(p, x).sum()
    >>> grads = dfax.dfa_grad(loss_fn)(params)   # was: jax.grad(loss_fn)
    >>> grads["params"]["layers_0"]["kernel"].shape
    (5, 8)
  """
  value_and_grad_fn = dfa_value_and_grad(
      fun, argnums, has_aux, holomorphic, allow_int, projector=projector,
      feedback=feedback, output=output, multiple_outputs=multiple_outputs)

  @functools.wraps(fun)
  def grad_fn(*args, **kwargs):
    value, grads = value_and_grad_fn(*args, **kwargs)
    return (grads, value[1]) if has_aux else grads

  return grad_fn
