"""Reaching the outer call of Flax lifted module classes (``nn.scan(Block)``).

Flax runs method interceptors inside a lifted body (on the clone it binds to
fresh scopes) but not on the outer call of a lifted class
(``ScanBlock.__call__``). dfax needs that outer call: values recorded inside
a scan body leave the body as extra (stacked) outputs and must be stripped
again outside, before the caller sees them. This holds for every lifted class
Flax makes: ``nn.scan``, ``nn.vmap``, ``nn.remat`` and the others of
``module_class_lift_transform``, and ``nn.jit`` and ``nn.fold_rngs`` of its
cached twin. ``nn.jit``'s body runs inline during a dfax trace, so that a body
JAX traced earlier (without dfax) is not taken from its cache, points lost.

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

import jax
from flax import linen as nn
from flax.linen import transforms as _transforms

_LIFT_MODULE = "flax.linen.transforms"
# Flax builds lifted module classes in two factories: the plain one (nn.scan,
# nn.vmap, nn.remat, ...) and the cached one (nn.jit, nn.fold_rngs), which
# keeps one traced body per class.
_LIFT_FACTORIES = ("module_class_lift_transform", "module_class_lift_transform_cached")
# Transforms whose body JAX may take from a cache instead of running it; dfax
# runs them inline (``jax.disable_jit``) so that the body, and its points, is
# traced on every dfax call.
CACHED_KINDS = ("jit",)
_local = threading.local()
_lock = threading.RLock()
_installed = {"depth": 0, "factories": {}, "classes": {}}  # class -> {name: original}


def active_recorder():
  """The recorder of the innermost dfax trace on this thread, or None."""
  stack = getattr(_local, "stack", None)
  return stack[-1] if stack else None


# -- the Flax internals, in one place ------------------------------------------
def lift_info(fn) -> tuple[str, dict] | None:
  """(transform name, keyword arguments) if ``fn`` is Flax's lifted method wrapper.

  Flax builds each lifted method as a closure named ``wrapped_fn`` in
  ``flax/linen/transforms.py`` that holds the core ``transform`` (``scan``,
  ``vmap``, ``checkpoint``, ``jit``, ``fold_rngs``, ...) and its ``trafo_kwargs``.
  """
  while fn is not None:
    code = getattr(fn, "__code__", None)
    if code is not None and code.co_name == "wrapped_fn" and code.co_filename.endswith(
        "transforms.py"):
      nonlocals = inspect.getclosurevars(fn).nonlocals
      transform = nonlocals.get("transform")
      name = getattr(transform, "__name__", "") or ""
      return name, dict(nonlocals.get("trafo_kwargs", {}))
    fn = getattr(fn, "__wrapped__", None)
  return None


def _lift_kind(transform_name: str) -> str:
  """"scan", "vmap", "jit" or "other" (remat, fold_rngs, ...), from the core transform."""
  return transform_name if transform_name in ("scan", "vmap", "jit") else "other"


def check_flax_internals() -> None:
  """Raises RuntimeError if the Flax internals dfax relies on have changed."""
  for factory_name in _LIFT_FACTORIES:
    if getattr(_transforms, factory_name, None) is None:
      raise RuntimeError(f"flax.linen.transforms.{factory_name} is gone: dfax cannot "
                         "reach points inside Flax's lifted transforms with this Flax.")

  class _Probe(nn.Module):
    @nn.compact
    def __call__(self, c, x):
      return c, x

  scanned = nn.scan(_Probe, variable_axes={"params": 0}, split_rngs={"params": True},
                    length=2, out_axes=0)
  info = lift_info(vars(scanned)["__call__"])
  if info is None or _lift_kind(info[0]) != "scan" or info[1].get("out_axes") != 0:
    raise RuntimeError("Flax's lifted method wrappers changed shape: dfax cannot read "
                       "nn.scan's out_axes; feedback points inside lifted modules would "
                       "be lost.")
  expected = {nn.vmap(_Probe, variable_axes={"params": 0}, split_rngs={"params": True},
                      in_axes=0, out_axes=0): "vmap",
              nn.jit(_Probe): "jit", nn.remat(_Probe): "other",
              nn.fold_rngs(_Probe): "other"}
  for cls, kind in expected.items():
    info = lift_info(vars(cls)["__call__"])
    if info is None or _lift_kind(info[0]) != kind:
      raise RuntimeError(f"Flax's lifted wrapper of {cls.__name__} changed shape: dfax "
                         "cannot tell which transform it is; feedback points inside it "
                         "would be lost.")


# -- wrapping, only while a trace runs -----------------------------------------
def _wrap(cls: type) -> None:
  if cls in _installed["classes"] or cls.__module__ != _LIFT_MODULE or len(
      cls.__bases__) != 1:
    return
  originals = {}
  for name, fn in list(vars(cls).items()):
    info = lift_info(fn) if inspect.isfunction(fn) else None
    if info is None:
      continue
    originals[name] = fn
    setattr(cls, name, _routing(fn, _lift_kind(info[0]), info[1].get("out_axes", 0)))
  _installed["classes"][cls] = originals


def _routing(orig, kind: str, out_axes: Any):
  @functools.wraps(orig)
  def lifted_method(self, *args, **kw):
    recorder = active_recorder()
    if recorder is None:
      return orig(self, *args, **kw)
    call = functools.partial(orig, self)
    if kind in CACHED_KINDS:
      call = _uncached(call)
    return recorder.run_lifted(call, args, kw, kind, out_axes)

  return lifted_method


def _uncached(call):
  """Runs ``call`` with ``jax.jit`` inlined, so that nn.jit traces its body anew.

  nn.jit keeps one ``jax.jit`` per class: a body traced outside dfax (or with
  other points) would be reused from JAX's cache and its points lost. The
  recorder turns jit back on inside the body (``jit_enabled``).
  """
  @functools.wraps(call)
  def inline(*args, **kwargs):
    with jax.disable_jit():
      return call(*args, **kwargs)

  return inline


def jit_enabled():
  """Turns ``jax.jit`` back on inside a body that ``_uncached`` inlined."""
  return jax.disable_jit(False)


def _wrap_existing() -> None:
  pending = [nn.Module]
  while pending:
    cls = pending.pop()
    pending.extend(cls.__subclasses__())
    _wrap(cls)


def _hooked(factory):
  @functools.wraps(factory)
  def lift_factory(*args, **kwargs):
    made = factory(*args, **kwargs)
    with _lock:
      if _installed["depth"]:
        _wrap(made.func if isinstance(made, functools.partial) else made)
    return made

  return lift_factory


def _install() -> None:
  for factory_name in _LIFT_FACTORIES:
    factory = getattr(_transforms, factory_name)
    _installed["factories"][factory_name] = factory
    setattr(_transforms, factory_name, _hooked(factory))
  _wrap_existing()


def _uninstall() -> None:
  for factory_name, factory in _installed["factories"].items():
    setattr(_transforms, factory_name, factory)
  for cls, originals in _installed["classes"].items():
    for name, fn in originals.items():
      setattr(cls, name, fn)
  _installed["classes"] = {}
  _installed["factories"] = {}


@contextlib.contextmanager
def routed(recorder) -> Iterator[None]:
  """Routes lifted outer calls on this thread to ``recorder`` while active.

  Args:
    recorder: the ``Recorder`` of the trace.

  Examples:
    How ``dfa_value_and_grad`` traces the loss (internal; ``recorder`` is the
    trace's ``Recorder``):

    ```python
    with lifted.routed(recorder), nn.intercept_methods(recorder):
      loss = loss_fn(params, batch)
    ```
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
