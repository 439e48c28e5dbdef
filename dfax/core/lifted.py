"""Reaching the outer call of Flax lifted module classes (``nn.scan(Block)``).

Flax runs method interceptors inside a lifted body (on the clone it binds to
fresh scopes) but not on the outer call of a lifted class
(``ScanBlock.__call__``). dfax needs that outer call: values recorded inside
a scan body leave the body as extra (stacked) outputs and must be stripped
again outside, before the caller sees them.

No public Flax API exposes that call, so this module is the one place that
relies on Flax internals (``flax.linen.transforms``), and only while a dfax
trace runs: ``routed(recorder)`` wraps the lifted methods of the lifted
classes that exist, and of those created during the trace, and restores
everything when the trace ends. Importing dfax changes nothing in Flax.
``check_flax_internals()`` verifies the assumptions; the test suite calls it
so that a Flax release that changes them fails loudly instead of silently
dropping points.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import threading
from typing import Any, Iterator

from flax import linen as nn
from flax.linen import transforms as _transforms

_LIFT_MODULE = "flax.linen.transforms"
_LIFT_FACTORY = "module_class_lift_transform"
_local = threading.local()
_lock = threading.RLock()
_installed = {"depth": 0, "factory": None, "classes": {}}  # class -> {name: original}


def active_recorder():
  """The recorder of the innermost dfax trace on this thread, or None."""
  stack = getattr(_local, "stack", None)
  return stack[-1] if stack else None


# -- the Flax internals, in one place ------------------------------------------
def _lift_kwargs(fn) -> dict | None:
  """The lift's keyword arguments if ``fn`` is Flax's lifted method wrapper.

  Flax builds each lifted method as a closure named ``wrapped_fn`` in
  ``flax/linen/transforms.py`` that holds the transform's ``trafo_kwargs``.
  """
  while fn is not None:
    code = getattr(fn, "__code__", None)
    if code is not None and code.co_name == "wrapped_fn" and code.co_filename.endswith(
        "transforms.py"):
      return dict(inspect.getclosurevars(fn).nonlocals.get("trafo_kwargs", {}))
    fn = getattr(fn, "__wrapped__", None)
  return None


def _lift_kind(cls: type) -> str:
  """"scan", "vmap" or "other", from the generated class name (ScanBlock)."""
  base = cls.__bases__[0].__name__
  prefix = cls.__name__[: len(cls.__name__) - len(base)].lower()
  return prefix if prefix in ("scan", "vmap") else "other"


def check_flax_internals() -> None:
  """Raises RuntimeError if the Flax internals dfax relies on have changed."""
  factory = getattr(_transforms, _LIFT_FACTORY, None)
  if factory is None:
    raise RuntimeError(f"flax.linen.transforms.{_LIFT_FACTORY} is gone: dfax cannot "
                       "reach points inside nn.scan/nn.remat with this Flax.")

  class _Probe(nn.Module):
    @nn.compact
    def __call__(self, c, x):
      return c, x

  scanned = nn.scan(_Probe, variable_axes={"params": 0}, split_rngs={"params": True},
                    length=2, out_axes=0)
  kwargs = _lift_kwargs(vars(scanned)["__call__"])
  if kwargs is None or kwargs.get("out_axes") != 0 or _lift_kind(scanned) != "scan":
    raise RuntimeError("Flax's lifted method wrappers changed shape: dfax cannot read "
                       "nn.scan's out_axes; feedback points inside lifted modules would "
                       "be lost.")


# -- wrapping, only while a trace runs -----------------------------------------
def _wrap(cls: type) -> None:
  if cls in _installed["classes"] or cls.__module__ != _LIFT_MODULE or len(
      cls.__bases__) != 1:
    return
  originals = {}
  for name, fn in list(vars(cls).items()):
    kwargs = _lift_kwargs(fn) if inspect.isfunction(fn) else None
    if kwargs is None:
      continue
    originals[name] = fn
    setattr(cls, name, _routing(fn, _lift_kind(cls), kwargs.get("out_axes", 0)))
  _installed["classes"][cls] = originals


def _routing(orig, kind: str, out_axes: Any):
  @functools.wraps(orig)
  def lifted_method(self, *args, **kw):
    recorder = active_recorder()
    if recorder is None:
      return orig(self, *args, **kw)
    return recorder.run_lifted(functools.partial(orig, self), args, kw, kind, out_axes)

  return lifted_method


def _wrap_existing() -> None:
  pending = [nn.Module]
  while pending:
    cls = pending.pop()
    pending.extend(cls.__subclasses__())
    _wrap(cls)


def _install() -> None:
  factory = getattr(_transforms, _LIFT_FACTORY)

  @functools.wraps(factory)
  def lift_factory(*args, **kwargs):
    made = factory(*args, **kwargs)
    with _lock:
      if _installed["depth"]:
        _wrap(made.func if isinstance(made, functools.partial) else made)
    return made

  _installed["factory"] = factory
  setattr(_transforms, _LIFT_FACTORY, lift_factory)
  _wrap_existing()


def _uninstall() -> None:
  setattr(_transforms, _LIFT_FACTORY, _installed["factory"])
  for cls, originals in _installed["classes"].items():
    for name, fn in originals.items():
      setattr(cls, name, fn)
  _installed["classes"] = {}
  _installed["factory"] = None


@contextlib.contextmanager
def routed(recorder) -> Iterator[None]:
  """Routes lifted outer calls on this thread to ``recorder`` while active.

  Args:
    recorder: the ``Recorder`` of the trace.

  Example::

    with lifted.routed(recorder), nn.intercept_methods(recorder):
      loss = loss_fn(params, batch)
  """
  with _lock:
    if _installed["depth"] == 0:
      _install()
    _installed["depth"] += 1
  if not hasattr(_local, "stack"):
    _local.stack = []
  _local.stack.append(recorder)
  try:
    yield
  finally:
    _local.stack.pop()
    with _lock:
      _installed["depth"] -= 1
      if _installed["depth"] == 0:
        _uninstall()
