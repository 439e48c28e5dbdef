"""Making Flax lifted module classes (``nn.scan(Block)``, ``nn.remat``) visible.

Flax does not run method interceptors on the outer call of a lifted class
(``ScanBlock.__call__``), only inside its body. dfax needs that outer call:
values recorded inside a scan body must leave the body as extra (stacked)
outputs and be stripped again outside. ``prepare_lifted_classes`` wraps the
lifted methods of every such class once; the wrapper is a no-op unless a
dfax trace is active on this thread.
"""

from __future__ import annotations

import functools
import inspect
import threading
import weakref
from typing import Any

from flax import linen as nn

_LIFT_MODULE = "flax.linen.transforms"
_ACTIVE = threading.local()
# Weak: nn.scan(...) inside a compact method makes a new class on every trace.
_prepared: "weakref.WeakSet[type]" = weakref.WeakSet()
_wrappers: "weakref.WeakSet" = weakref.WeakSet()


def active_recorder():
  stack = getattr(_ACTIVE, "stack", None)
  return stack[-1] if stack else None


class activate:
  """Context manager: routes lifted calls on this thread to ``recorder``."""

  def __init__(self, recorder):
    self.recorder = recorder

  def __enter__(self):
    if not hasattr(_ACTIVE, "stack"):
      _ACTIVE.stack = []
    _ACTIVE.stack.append(self.recorder)
    return self.recorder

  def __exit__(self, *exc):
    _ACTIVE.stack.pop()


def _transform_kwargs(fn) -> dict | None:
  """The lift's keyword arguments if ``fn`` is Flax's lifted method wrapper."""
  while fn is not None:
    code = getattr(fn, "__code__", None)
    if code is not None and code.co_name == "wrapped_fn" and code.co_filename.endswith(
        "transforms.py"):
      return dict(inspect.getclosurevars(fn).nonlocals.get("trafo_kwargs", {}))
    fn = getattr(fn, "__wrapped__", None)
  return None


def _lift_kind(cls: type) -> str:
  base = cls.__bases__[0].__name__
  prefix = cls.__name__[: len(cls.__name__) - len(base)].lower()
  return prefix if prefix in ("scan", "vmap") else "other"


def _wrap(cls: type, name: str, orig, kwargs: dict) -> None:
  kind, out_axes = _lift_kind(cls), kwargs.get("out_axes", 0)

  @functools.wraps(orig)
  def lifted_method(self, *args, **kw):
    recorder = active_recorder()
    if recorder is None:
      return orig(self, *args, **kw)
    return recorder.run_lifted(functools.partial(orig, self), args, kw, kind, out_axes)

  lifted_method.method_handler_wrapped = True
  _wrappers.add(lifted_method)
  setattr(cls, name, lifted_method)


def prepare_lifted_classes() -> None:
  """Wraps the lifted methods of every Flax lifted Module class (idempotent)."""
  pending = [nn.Module]
  while pending:
    cls = pending.pop()
    pending.extend(cls.__subclasses__())
    prepare_class(cls)


def prepare_class(cls: type) -> None:
  """Wraps the lifted methods of one class, if it is a Flax lifted class."""
  if cls in _prepared or cls.__module__ != _LIFT_MODULE or len(cls.__bases__) != 1:
    return
  _prepared.add(cls)
  for name, fn in list(vars(cls).items()):
    if not inspect.isfunction(fn) or fn in _wrappers:  # (wraps copies flags)
      continue
    kwargs = _transform_kwargs(fn)
    if kwargs is not None:
      _wrap(cls, name, fn, kwargs)


def _prepare_on_creation() -> None:
  """Also wraps lifted classes created later (e.g. nn.scan(...) inside compact)."""
  from flax.linen import transforms

  original = transforms.module_class_lift_transform
  if getattr(original, "dfax_hooked", False):
    return

  @functools.wraps(original)
  def module_class_lift_transform(*args, **kwargs):
    cls = original(*args, **kwargs)
    target = cls.func if isinstance(cls, functools.partial) else cls
    prepare_class(target)
    return cls

  module_class_lift_transform.dfax_hooked = True
  transforms.module_class_lift_transform = module_class_lift_transform


_prepare_on_creation()
