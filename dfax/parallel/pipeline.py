"""Pipeline-parallel DFA and backprop over a ``stage`` mesh axis (GPipe forward).

Both schedules run under ``jax.shard_map`` on a ``("data", "stage")`` mesh
(``dfax.parallel.make_pipeline_mesh``). Stage ``s`` holds slice ``s`` of the
stacked stage parameters; microbatches enter stage 0 one per step and move on
by ``jax.lax.ppermute``, so the forward takes ``M + S - 1`` steps.

* ``backprop_pipeline``: ``jax.value_and_grad`` of that forward. JAX
  transposes every ``ppermute`` into one running the other way, so the
  backward is a second chain of ``M + S - 1`` dependent steps (GPipe).
* ``dfa_pipeline``: the last stage computes the head, the loss and each
  microbatch's output error ``e``; one ``psum`` over ``stage`` hands ``e`` to
  every stage; each stage then projects ``e`` to its own feedback point(s)
  (``dfax.parallel.feedback``) and replays the pullbacks it kept during the
  forward for all its microbatches at once (``jax.vmap``). No ``ppermute``
  runs after the forward: the backward has no stage-to-stage chain, so no
  backward bubble.

The DFA gradients equal ``dfax.dfa_grad`` of the same model on one device with
the same projector (see tests/parallel/test_pipeline.py).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, PartitionSpec as P

from dfax.core.points import PointSpec
from dfax.parallel.feedback import StageFeedback
from dfax.parallel.layer_parallel import LayerStack, cut_stack
from dfax.parallel.residuals import Pullback, replay, split_vjp

STAGE_POINT = "stages/out/in"  # dfa_grad's path of a stage-output point (dfax.models.stack)


@dataclasses.dataclass(frozen=True)
class PipelineParts:
  """A model split for the pipeline; every function is pure (``dfax.models.stack.pipeline_parts``).

  Attributes:
    embed: ``(params["embed"], x) -> h``, run on stage 0.
    stage: ``(one stage's params, h) -> h``, the stage's blocks; the params
      have the leading ``num_stages`` axis removed.
    head: ``(params["head"], h) -> logits``, run on the last stage.
    loss: ``(logits, labels) -> summed loss`` over the microbatch.
    block: ``(one block's params, h) -> h``, when the stage is a scan of
      blocks (``cut="block"`` uses it); ``None`` otherwise.
    point: ``dfa_grad``'s path of the stacked feedback point.
  """
  embed: Callable[[Any, jax.Array], jax.Array]
  stage: Callable[[Any, jax.Array], jax.Array]
  head: Callable[[Any, jax.Array], jax.Array]
  loss: Callable[[jax.Array, jax.Array], jax.Array]
  block: Callable[[Any, jax.Array], jax.Array] | None = None
  point: str = STAGE_POINT




STAGE_MODES = ("vjp", "vmap", "scan")  # how a block-cut stage runs its own backward


def param_specs(params: dict) -> dict:
  """Shard specs: ``stages`` over ``stage`` (leading axis), the rest replicated."""
  return {k: (P("stage") if k == "stages" else P()) for k in params}


def _check(params: dict, x: jax.Array, mesh: Mesh, num_microbatches: int) -> tuple[int, int]:
  for axis in ("data", "stage"):
    if axis not in mesh.shape:
      raise ValueError(f"dfax.parallel.pipeline: the mesh needs a {axis!r} axis (it has "
                       f"{tuple(mesh.shape)}); build it with make_pipeline_mesh(stage, data).")
  if set(params) != {"embed", "stages", "head"}:
    raise ValueError("dfax.parallel.pipeline: params must be a dict with keys 'embed', "
                     f"'stages', 'head' (got {sorted(params)}); see stack.to_pipeline.")
  num_stages, data = mesh.shape["stage"], mesh.shape["data"]
  lead = {a.shape[0] for a in jax.tree.leaves(params["stages"])}
  if lead != {num_stages}:
    raise ValueError(f"dfax.parallel.pipeline: stage params have leading dims {sorted(lead)}, "
                     f"but the mesh has {num_stages} stages; stack one slice per stage.")
  if x.shape[0] % (data * num_microbatches):
    raise ValueError(f"dfax.parallel.pipeline: batch {x.shape[0]} is not divisible by "
                     f"data={data} x num_microbatches={num_microbatches}.")
  return num_stages, x.shape[0]


def _microbatches(a: jax.Array, num: int) -> jax.Array:
  return a.reshape((num, a.shape[0] // num) + a.shape[1:])


def _gpipe_forward(step_fn: Callable, emb: jax.Array, num_stages: int) -> tuple[jax.Array, list]:
  """GPipe forward on one stage: ``step_fn(h) -> (out, kept)`` per step.

  Returns the last stage's outputs, one per microbatch (valid on the last
  stage only), and what ``step_fn`` kept at each of the ``M + S - 1`` steps.
  """
  stage = jax.lax.axis_index("stage")
  num_micro = emb.shape[0]
  perm = [(i, i + 1) for i in range(num_stages - 1)]
  state = jnp.zeros_like(emb[0])
  outs, kept = [], []
  for t in range(num_micro + num_stages - 1):
    inp = jnp.where(stage == 0, emb[min(t, num_micro - 1)], state)
    out, k = step_fn(inp)
    kept.append(k)
    if t >= num_stages - 1:
      outs.append(out)
    if t < num_micro + num_stages - 2:
      state = jax.lax.ppermute(out, "stage", perm)
  return jnp.stack(outs), kept


def backprop_pipeline(parts: PipelineParts, mesh: Mesh, num_microbatches: int) -> Callable:
  """``(params, x, y) -> (loss, grads)`` of the GPipe backprop pipeline.

  Args:
    parts: the model's pure functions (``dfax.models.stack.pipeline_parts``).
    mesh: a ``("data", "stage")`` mesh.
    num_microbatches: ``M``, microbatches per data shard.

  Returns:
    A jitted function; ``loss`` is the mean over the global batch.

  Examples:
    One stage on one device (``make_pipeline_mesh(4)`` and
    ``num_stages=4`` on 4):

    >>> from dfax.parallel import make_pipeline_mesh
    >>> from dfax.models.stack import StackConfig, StackedMLP, pipeline_parts, to_pipeline
    >>> cfg = StackConfig(num_stages=1, blocks_per_stage=2)
    >>> x, y = jnp.ones((8, 16)), jnp.zeros(8, jnp.int32)
    >>> params = to_pipeline(StackedMLP(cfg).init(jax.random.key(0), x))
    >>> fn = backprop_pipeline(pipeline_parts(cfg), make_pipeline_mesh(1), 2)
    >>> loss, grads = fn(params, x, y)
    >>> jax.tree.structure(grads) == jax.tree.structure(params)
    True
  """
  stage_fn = parts.stage

  def fn(params, x, y):
    num_stages, batch = _check(params, x, mesh, num_microbatches)

    def local(params, x, y):
      sp = jax.tree.map(lambda a: a[0], params["stages"])
      emb = _microbatches(parts.embed(params["embed"], x), num_microbatches)
      outs, _ = _gpipe_forward(lambda h: (stage_fn(sp, h), None), emb, num_stages)
      flat = outs.reshape((-1,) + outs.shape[2:])
      loss = parts.loss(parts.head(params["head"], flat), y) / batch
      loss = jnp.where(jax.lax.axis_index("stage") == num_stages - 1, loss, 0.0)
      return jax.lax.psum(loss, ("data", "stage"))

    sharded = jax.shard_map(local, mesh=mesh, in_specs=(param_specs(params), P("data"),
                                                        P("data")), out_specs=P())
    return jax.value_and_grad(sharded)(params, x, y)

  return jax.jit(fn)


def _stage_step(parts: PipelineParts, stage_mode: str):
  """``(forward(p, h) -> (points, stored), backward(p, stored, cots) -> (g, dh))``."""
  if parts.block is None:
    pb = Pullback()
    points = lambda p, h: parts.stage(p, h)[None]
    fwd = lambda p, h: split_vjp(points, p, h, pullback=pb)
    return fwd, lambda p, stored, cot: replay(pb, p, stored, cot)
  if stage_mode == "vjp":  # the reverse scan jax.vjp makes of the cut stack
    pb = Pullback()
    points = lambda p, h: cut_stack(parts.block, p["blocks"], h)
    fwd = lambda p, h: split_vjp(points, p, h, pullback=pb)
    return fwd, lambda p, stored, cot: replay(pb, p, stored, cot)
  stack = LayerStack(parts.block)

  def bwd(p, stored, cot):
    g, dh = stack.backward(p["blocks"], stored, cot, mode=stage_mode)
    return {"blocks": g}, dh

  return lambda p, h: stack.forward(p["blocks"], h), bwd


def _replay_microbatches(bwd: Callable, params, window, cots, mode: str):
  """A stage's ``M`` microbatch backwards; none waits for another stage.

  ``mode="scan"``: a local loop accumulating the gradients; ``"vmap"``: all at
  once (``M`` copies of the gradients in memory). Returns ``(grads, dh)``.
  """
  if mode == "vmap":
    g, dh = jax.vmap(bwd, in_axes=(None, 0, 0))(params, window, cots)
    return jax.tree.map(lambda a: a.sum(0), g), dh

  def one(acc, a):
    g, dh = bwd(params, *a)
    return jax.tree.map(jnp.add, acc, g), dh

  return jax.lax.scan(one, jax.tree.map(jnp.zeros_like, params), (window, cots))


def dfa_pipeline(parts: PipelineParts, mesh: Mesh, num_microbatches: int,
                 feedback: StageFeedback, *, stage_mode: str = "vmap",
                 microbatch_mode: str = "scan") -> Callable:
  """``(params, x, y) -> (loss, grads)`` of the DFA pipeline (no backward bubble).

  Args:
    parts: the model's pure functions; ``parts.point`` names the stacked
      feedback point (one copy per stage, or per block when ``parts.block``).
    mesh: a ``("data", "stage")`` mesh.
    num_microbatches: ``M``, microbatches per data shard.
    feedback: projects the error to a stage's own copies
      (``feedback.keyed_dense(key)`` or ``feedback.from_projector(p)``).
    stage_mode: for block-cut stages, how a stage replays its blocks'
      backwards: ``"vmap"`` (layer-parallel), ``"scan"`` (one by one) or
      ``"vjp"`` (``jax.vjp`` of the cut stack, as ``dfa_grad`` does).
    microbatch_mode: how a stage runs its ``M`` microbatch backwards (none of
      which waits for another stage): ``"scan"``, a local loop accumulating
      the gradients, or ``"vmap"``, all at once (``M`` gradient copies in memory).

  Returns:
    A jitted function; gradients are structured like ``params``.

  Examples:
    One stage on one device (``make_pipeline_mesh(4)`` and
    ``num_stages=4`` on 4):

    >>> from dfax.parallel import feedback, make_pipeline_mesh
    >>> from dfax.models.stack import StackConfig, StackedMLP, pipeline_parts, to_pipeline
    >>> cfg = StackConfig(num_stages=1, blocks_per_stage=2)
    >>> x, y = jnp.ones((8, 16)), jnp.zeros(8, jnp.int32)
    >>> params = to_pipeline(StackedMLP(cfg).init(jax.random.key(0), x))
    >>> fb = feedback.keyed_dense(jax.random.key(0))
    >>> loss, grads = dfa_pipeline(pipeline_parts(cfg), make_pipeline_mesh(1), 2, fb)(params, x, y)
    >>> jax.tree.structure(grads) == jax.tree.structure(params)
    True
  """
  if microbatch_mode not in ("scan", "vmap"):
    raise ValueError("dfax.parallel.pipeline: microbatch_mode must be 'scan' or 'vmap', "
                     f"got {microbatch_mode!r}.")
  if stage_mode not in STAGE_MODES:
    raise ValueError(f"dfax.parallel.pipeline: stage_mode must be one of {STAGE_MODES}, "
                     f"got {stage_mode!r}.")
  fwd, bwd = _stage_step(parts, stage_mode)

  def fn(params, x, y):
    num_stages, batch = _check(params, x, mesh, num_microbatches)
    num_micro = num_microbatches

    def local(params, x, y):
      stage = jax.lax.axis_index("stage")
      first, last = stage == 0, stage == num_stages - 1
      sp = jax.tree.map(lambda a: a[0], params["stages"])
      emb, embed_vjp = jax.vjp(lambda p: parts.embed(p, x), params["embed"])
      k = jax.tree.leaves(sp)[0].shape[0] if parts.block else 1  # points per stage

      def step(h):
        points, stored = fwd(sp, h)
        return points[-1], stored

      outs, stored = _gpipe_forward(step, _microbatches(emb, num_micro), num_stages)
      flat = outs.reshape((-1,) + outs.shape[2:])
      logits, head_vjp = jax.vjp(lambda p: parts.head(p, flat), params["head"])
      loss, error = jax.value_and_grad(lambda lg: parts.loss(lg, y) / batch)(logits)
      (g_head,) = head_vjp(error)
      error = jax.lax.psum(jnp.where(last, error, 0.0), "stage")  # the one collective

      stack_shape = (num_stages, k) if parts.block else (num_stages,)
      spec = PointSpec(parts.point, stack_shape + flat.shape, flat.dtype, len(stack_shape))
      cots = feedback(error, spec, stage * k + jnp.arange(k))  # (k, M * mb, ...)
      cots = jnp.moveaxis(cots.reshape((k, num_micro, -1) + cots.shape[2:]), 1, 0)
      window = jax.tree.map(
          lambda *a: jax.lax.dynamic_slice_in_dim(jnp.stack(a), stage, num_micro), *stored)
      g_stage, g_in = _replay_microbatches(bwd, sp, window, cots, microbatch_mode)
      g_stage = jax.tree.map(lambda a: a[None], g_stage)
      g_in = jnp.where(first, g_in.reshape(emb.shape), 0.0)
      (g_embed,) = embed_vjp(g_in)
      mask = lambda tree, keep: jax.tree.map(lambda a: jnp.where(keep, a, 0.0), tree)
      grads = {"embed": jax.lax.psum(g_embed, ("data", "stage")),
               "stages": jax.lax.psum(g_stage, "data"),
               "head": jax.lax.psum(mask(g_head, last), ("data", "stage"))}
      return jax.lax.psum(jnp.where(last, loss, 0.0), ("data", "stage")), grads

    specs = param_specs(params)
    sharded = jax.shard_map(local, mesh=mesh, in_specs=(specs, P("data"), P("data")),
                            out_specs=(P(), specs), check_vma=False)
    return sharded(params, x, y)

  return jax.jit(fn)


def place(params: dict, mesh: Mesh) -> dict:
  """``params`` on ``mesh``: stage params sharded over ``stage``, the rest replicated."""
  specs = param_specs(params)
  return {k: jax.device_put(v, jax.sharding.NamedSharding(mesh, specs[k]))
          for k, v in params.items()}


def train_step(grad_fn: Callable, optimizer: Any) -> Callable:
  """A jitted ``(params, opt_state, x, y) -> (params, opt_state, loss)`` for a trainer.

  ``params`` and ``opt_state`` are donated (their buffers are reused).

  Args:
    grad_fn: ``dfa_pipeline(...)`` or ``backprop_pipeline(...)``.
    optimizer: an ``optax.GradientTransformation``.

  Examples:
    >>> import optax
    >>> from dfax.parallel import feedback, make_pipeline_mesh
    >>> from dfax.models.stack import StackConfig, StackedMLP, pipeline_parts, to_pipeline
    >>> cfg = StackConfig(num_stages=1, blocks_per_stage=2)
    >>> x, y = jnp.ones((8, 16)), jnp.zeros(8, jnp.int32)
    >>> mesh, optimizer = make_pipeline_mesh(1), optax.adam(1e-3)
    >>> fb = feedback.keyed_dense(jax.random.key(0))
    >>> step = train_step(dfa_pipeline(pipeline_parts(cfg), mesh, 2, fb), optimizer)
    >>> params = place(to_pipeline(StackedMLP(cfg).init(jax.random.key(0), x)), mesh)
    >>> opt_state = optimizer.init(params)
    >>> params, opt_state, loss = step(params, opt_state, x, y)
    >>> bool(loss > 0)
    True
  """
  import optax  # noqa: PLC0415

  @functools.partial(jax.jit, donate_argnums=(0, 1))
  def step(params, opt_state, x, y):
    loss, grads = grad_fn(params, x, y)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return step
