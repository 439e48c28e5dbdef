"""The critical path of a compiled SPMD program, read from its HLO text.

Every device of a ``shard_map`` pipeline runs the same program, so the
dependency graph of one device's program, with each collective as a meeting
point of all devices, is the graph of the whole schedule. ``analyze`` parses
``compiled.as_text()``, weighs every instruction by the matmul FLOPs it runs
(looking into fusions, calls and loops, times their known trip counts) and
returns the heaviest dependency chain: the sequential compute and transfer
steps of one training step. Instructions whose JAX name contains
``transpose(`` belong to the backward pass (that is how JAX names what
``jax.vjp`` / ``jax.grad`` emit), the others to the forward.
"""

from __future__ import annotations

import dataclasses
import math
import re

_SHAPE = re.compile(r"^[a-z]\w*\[([\d,]*)\]")
_CALLED = re.compile(r"\b(?:calls|body|condition|to_apply)=%([\w.\-]+)")
_BRANCHES = re.compile(r"branch_computations=\{([^}]*)\}")
_TRIP = re.compile(r'known_trip_count":\{"n":"(\d+)"')
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_CONTRACT = re.compile(r"lhs_contracting_dims=\{([\d,]*)\}")
PERMUTES = ("collective-permute", "collective-permute-start")
REDUCES = ("all-reduce", "all-reduce-start")


@dataclasses.dataclass
class Instr:
  name: str
  shape: tuple[int, ...] | None
  op: str
  operands: list[str]
  attrs: str
  backward: bool


@dataclasses.dataclass(frozen=True)
class Schedule:
  """What ``analyze`` reads from one device's program.

  Attributes:
    total_flops: matmul FLOPs the device runs per step.
    critical_flops: matmul FLOPs on the heaviest dependency chain.
    permutes: ``{"forward": n, "backward": n}`` collective-permutes.
    path_permutes: collective-permutes on the heaviest chain (sequential transfers).
    path_reduces: all-reduces on the heaviest chain.
    backward_flops: matmul FLOPs of backward instructions.
  """
  total_flops: float
  critical_flops: float
  permutes: dict
  path_permutes: int
  path_reduces: int
  backward_flops: float


def _split_type(rest: str) -> tuple[str, str]:
  if rest.startswith("("):
    depth = 0
    for i, ch in enumerate(rest):
      depth += ch == "("
      depth -= ch == ")"
      if depth == 0:
        return rest[: i + 1], rest[i + 1:].lstrip()
  head, _, tail = rest.partition(" ")
  return head, tail


def _parse_instr(line: str) -> Instr | None:
  line = line.strip()
  if line.startswith("ROOT "):
    line = line[5:]
  if not line.startswith("%") or " = " not in line:
    return None
  name, _, rest = line.partition(" = ")
  type_str, rest = _split_type(rest)
  op, paren, tail = rest.partition("(")
  if not paren:
    return None
  depth, end = 1, len(tail)
  for i, ch in enumerate(tail):
    depth += (ch == "(") - (ch == ")")
    if depth == 0:
      end = i
      break
  m = _SHAPE.match(type_str)
  shape = tuple(int(d) for d in m.group(1).split(",") if d) if m else None
  op_name = _OP_NAME.search(tail)
  return Instr(name=name[1:], shape=shape, op=op.strip(), attrs=tail[end:],
               operands=re.findall(r"%([\w.\-]+)", tail[:end]),
               backward=bool(op_name and "transpose(" in op_name.group(1)))


def parse_hlo(text: str) -> tuple[dict[str, list[Instr]], str]:
  """``({computation: [instructions in order]}, entry name)`` of HLO text."""
  comps, entry, current = {}, None, None
  for line in text.splitlines():
    if line.endswith("{") and ("->" in line) and not line.startswith(" "):
      is_entry = line.startswith("ENTRY ")
      current = line.split()[1 if is_entry else 0].lstrip("%")
      comps[current] = []
      entry = current if is_entry else entry
    elif line.strip() == "}":
      current = None
    elif current is not None:
      instr = _parse_instr(line)
      if instr is not None:
        comps[current].append(instr)
  if entry is None:
    raise ValueError("hlo_schedule: no ENTRY computation in the HLO text; pass "
                     "jax.jit(f).lower(...).compile().as_text().")
  return comps, entry


class _Flops:
  def __init__(self, comps):
    self.comps, self.memo = comps, {}

  def of_comp(self, name: str) -> float:
    if name not in self.memo:
      self.memo[name] = 0.0
      table = {i.name: i for i in self.comps.get(name, [])}
      self.memo[name] = sum(self.of_instr(i, table) for i in self.comps.get(name, []))
    return self.memo[name]

  def of_instr(self, instr: Instr, table: dict) -> float:
    if instr.op == "dot" and instr.shape is not None and instr.operands:
      lhs = table.get(instr.operands[0])
      dims = _CONTRACT.search(instr.attrs)
      if lhs is None or lhs.shape is None or dims is None:
        return 0.0
      k = math.prod(lhs.shape[int(d)] for d in dims.group(1).split(",") if d)
      return 2.0 * math.prod(instr.shape) * k
    called = _CALLED.findall(instr.attrs)
    if instr.op == "while":
      trip = _TRIP.search(instr.attrs)
      return (int(trip.group(1)) if trip else 1) * sum(self.of_comp(c) for c in called)
    if instr.op == "conditional":
      branches = _BRANCHES.search(instr.attrs)
      names = re.findall(r"%([\w.\-]+)", branches.group(1)) if branches else []
      return max((self.of_comp(c) for c in names), default=0.0)
    return sum(self.of_comp(c) for c in called)


def analyze(hlo_text: str) -> Schedule:
  """The critical path and collective counts of one device's compiled program.

  Args:
    hlo_text: ``jax.jit(f).lower(*args).compile().as_text()``.

  Returns:
    A ``Schedule``.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> step = lambda w, x: jnp.tanh(x @ w).sum()
    >>> s = analyze(jax.jit(step).lower(jnp.ones((4, 4)), jnp.ones((2, 4))).compile().as_text())
    >>> s.total_flops, s.critical_flops / s.total_flops, s.permutes["backward"]
    (64.0, 1.0, 0)
  """
  comps, entry = parse_hlo(hlo_text)
  flops = _Flops(comps)
  table = {i.name: i for i in comps[entry]}
  dist, perms, reds = {}, {}, {}
  total = backward = 0.0
  counts = {"forward": 0, "backward": 0}
  for instr in comps[entry]:
    w = flops.of_instr(instr, table)
    total += w
    backward += w if instr.backward else 0.0
    is_perm, is_red = instr.op in PERMUTES, instr.op in REDUCES
    if is_perm:
      counts["backward" if instr.backward else "forward"] += 1
    preds = [p for p in instr.operands if p in dist]
    best = max(preds, key=lambda p: dist[p], default=None)
    dist[instr.name] = w + (dist[best] if best else 0.0)
    perms[instr.name] = is_perm + (perms[best] if best else 0)
    reds[instr.name] = is_red + (reds[best] if best else 0)
  # the chain's end: heaviest node; ties go to the one with most transfers
  end = max(dist, key=lambda n: (dist[n], perms[n]))
  return Schedule(total_flops=total, critical_flops=dist[end], permutes=counts,
                  path_permutes=perms[end], path_reduces=reds[end], backward_flops=backward)
