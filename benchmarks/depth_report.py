"""The depth benchmark's reports: closures, merged runs and seeds.

``lm_depth.py`` trains the rows; this module turns their ``--json`` results into
what the depth page shows: the gap closure and DFA's lead of one depth
(``summarise``), the rows of several processes of one seed joined
(``merge``), each row's mean and spread over seeds (``across_seeds``), and the
hybrid curve's points (``hybrid_curve``). ``depth_plots`` draws them.
"""

from __future__ import annotations

import json
import pathlib
import statistics

# The arguments that only choose which rows run, where results go, or how the same function
# is compiled ("unroll"); every other argument (sizes, steps, seed, the method's settings)
# must match for rows to be compared.
NOT_THE_RUN = frozenset({"depths", "rows", "bp_blocks", "levers", "json", "plot", "plot_levers",
                         "plot_depths", "merge", "seeds", "baseline", "quick", "unroll"})
# What a backprop baseline must share with the runs it is the baseline of: the data, sizes and
# budget. How it trains (norm, learning rate, schedule, initialisation) may differ.
SIZES = frozenset({"steps", "d_model", "heads", "d_ff", "seq", "batch", "eval_batches", "dtype"})
# The settings the bp row alone may train at (``--bp_<name>``); every other row trains at <name>.
BP_OWN = ("lr", "warmup", "residual_init")
_BP_FLAGS = frozenset(f"bp_{name}" for name in BP_OWN)


def differences(a: dict, b: dict, ignore: frozenset = frozenset()) -> list[str]:
  """The run-defining arguments in which two runs' ``args`` differ (those both record).

  Examples:
    >>> differences({"seed": 0, "norm": "pre", "rows": "dfa"}, {"seed": 0, "norm": "post"})
    ['norm']
  """
  return sorted(k for k in a.keys() & b.keys() - NOT_THE_RUN - ignore if a[k] != b[k])


def row_settings(args: dict, row: str) -> dict:
  """The settings ``row`` trained at: ``args``, with the bp row's own ``--bp_*`` in place.

  Examples:
    >>> args = {"lr": 0.005, "warmup": 600, "bp_lr": 0.003, "bp_warmup": None}
    >>> row_settings(args, "bp"), row_settings(args, "dfa")
    ({'lr': 0.003, 'warmup': 600}, {'lr': 0.005, 'warmup': 600})
  """
  plain = {k: v for k, v in args.items() if k not in _BP_FLAGS}
  if row != "bp":
    return plain
  return {**plain, **{k: args[f"bp_{k}"] for k in BP_OWN if args.get(f"bp_{k}") is not None}}


def with_bp_settings(args: dict, bp: dict | None) -> dict:
  """``args`` whose ``--bp_*`` say how the bp row trained (``bp``: its ``row_settings``).

  Examples:
    >>> with_bp_settings({"lr": 0.005, "warmup": 600}, {"lr": 0.003, "warmup": 600})
    {'lr': 0.005, 'warmup': 600, 'bp_lr': 0.003, 'bp_warmup': None, 'bp_residual_init': None}
  """
  own = {f"bp_{k}": bp[k] if bp is not None and bp.get(k) != args.get(k) else None
         for k in BP_OWN}
  return {**{k: v for k, v in args.items() if k not in _BP_FLAGS}, **own}


def rows_of(run: dict) -> set[str]:
  """The names of the rows a run has, at any depth."""
  return {row for result in run["depths"].values() for row in result["rows"]}


def gap_closure(results: dict) -> float | None:
  """``(zero - dfa) / (zero - bp)``: 0 is the zero-feedback control, 1 is backprop."""
  if not all(k in results for k in ("dfa", "zero", "bp")):
    return None
  zero, dfa, bp = (results[k]["val_loss"] for k in ("zero", "dfa", "bp"))
  return (zero - dfa) / (zero - bp) if zero != bp else None


def lever_closures(results: dict) -> dict:
  """Each ``dfa:<lever>`` row's gap closure against the same zero-feedback and backprop rows."""
  if not {"zero", "bp"} <= results.keys():
    return {}
  return {row.split(":", 1)[1]: gap_closure({**results, "dfa": r})
          for row, r in results.items() if row.startswith("dfa:")}


def summarise(rows: dict) -> dict:
  """One depth's figures from its rows: the gap closure, each lever's, DFA's lead over the
  last-block control (None where a row they need is missing)."""
  lead = (rows["last_block"]["val_loss"] - rows["dfa"]["val_loss"]
          if {"dfa", "last_block"} <= rows.keys() else None)
  return {"gap_closure": gap_closure(rows), "levers": lever_closures(rows),
          "dfa_lead_over_last_block": lead}


def read_run(path: str) -> dict:
  """One ``--json`` result; a missing or unreadable file is a one-line error naming it."""
  try:
    run = json.loads(pathlib.Path(path).read_text())
  except (OSError, ValueError) as error:
    raise SystemExit(f"lm_depth.py: cannot read {path} ({error.__class__.__name__}); give "
                     "the --json files lm_depth.py wrote") from None
  if not isinstance(run, dict) or not {"args", "depths"} <= run.keys():
    raise SystemExit(f"lm_depth.py: {path} is not an lm_depth.py --json result (no args and "
                     "depths); give the --json files lm_depth.py wrote")
  return run


def merge(paths: list[str]) -> dict:
  """The rows of several ``--json`` results, per depth, with the closures recomputed.

  Raises:
    SystemExit: when the files differ in sizes, steps, seed or settings (rows
      that did not start from the same initialisation and batches, or that
      share a name but not a method, cannot be compared).
  """
  return merge_runs(paths, [read_run(p) for p in paths])


def merge_runs(paths: list[str], runs: list[dict]) -> dict:
  """``merge`` of results already read (``runs[i]`` from ``paths[i]``).

  Every row keeps the settings it trained at: the rows other than bp must
  match the first file that has one, and the bp row its own file, except in
  ``BP_OWN``, which the merged ``args`` record as ``--bp_*`` (as one process
  run with those flags would).
  """
  plain_at = next((i for i, run in enumerate(runs) if rows_of(run) - {"bp"}), 0)
  bp_at = next((i for i, run in enumerate(runs) if "bp" in rows_of(run)), None)
  args = with_bp_settings(runs[plain_at]["args"],
                          None if bp_at is None else row_settings(runs[bp_at]["args"], "bp"))
  for path, run in zip(paths, runs):
    for row in sorted(rows_of(run)):
      diff = differences(row_settings(run["args"], row), row_settings(args, row))
      if diff:
        source = paths[bp_at if row == "bp" else plain_at]
        raise SystemExit(
            f"lm_depth.py: the {row} row of {path} differs from {source}'s in {diff}; merge "
            "only rows of the same sizes, steps, seed and settings (a lever is a row; the bp "
            f"row alone may train at its own {', '.join(BP_OWN)})")
  out = {**runs[0], "args": args, "merged_from": list(paths), "depths": {}}
  for run in runs:
    for depth, result in run["depths"].items():
      out["depths"].setdefault(depth, {"rows": {}})["rows"].update(result["rows"])
  for summary in out["depths"].values():
    summary.update(summarise(summary["rows"]))
  return out


def print_summary(out: dict) -> None:
  """The rows and closures of every depth, as a table."""
  print_baseline(out)
  print(f"{'depth':>5} {'row':>18} {'val loss':>9} {'closure':>8}")
  for depth, summary in out["depths"].items():
    for row, result in summary["rows"].items():
      closure = summary["levers"].get(row.split(":", 1)[-1]) if row.startswith("dfa:") else (
          summary["gap_closure"] if row == "dfa" else None)
      print(f"{depth:>5} {row:>18} {result['val_loss']:>9.4f} "
            f"{'' if closure is None else f'{closure:8.3f}':>8}")


def spread(by_seed: dict[int, float]) -> dict:
  """``{"mean", "std", "n", "seeds", "values"}`` of one figure's value at each seed.

  ``std`` is the sample standard deviation (None for one value).

  Examples:
    >>> spread({0: 2.0, 1: 2.5, 2: 3.0})
    {'mean': 2.5, 'std': 0.5, 'n': 3, 'seeds': [0, 1, 2], 'values': [2.0, 2.5, 3.0]}
  """
  values = list(by_seed.values())
  return {"mean": statistics.fmean(values),
          "std": statistics.stdev(values) if len(values) > 1 else None,
          "n": len(values), "seeds": list(by_seed), "values": values}


def by_seed_merged(paths: list[str]) -> dict[int, dict]:
  """The ``--json`` files' runs, those of one seed merged (``merge``), by seed."""
  by_seed: dict[int, list[tuple[str, dict]]] = {}
  for path in paths:
    run = read_run(path)
    by_seed.setdefault(run["args"]["seed"], []).append((path, run))
  return {seed: merge_runs(*map(list, zip(*group))) for seed, group in sorted(by_seed.items())}


def same_but_seed(runs: dict[int, dict], what: str) -> None:
  """Refuses per-seed runs (``by_seed_merged``) that differ in anything but the seed."""
  first_seed, first = next(iter(runs.items()))
  for seed, run in runs.items():
    # the bp row's own settings count only where both seeds have one
    both_bp = "bp" in rows_of(run) and "bp" in rows_of(first)
    diff = differences(run["args"], first["args"],
                       ignore=frozenset({"seed"}) | (frozenset() if both_bp else _BP_FLAGS))
    if diff:
      raise SystemExit(f"lm_depth.py: the seed-{seed} {what} differ from the seed-{first_seed} "
                       f"{what} in {diff}; compare seeds of the same sizes, steps and settings")


def against_baseline(run: dict, seed: int, baseline: dict | None) -> dict:
  """``run`` with each depth's ``bp`` row taken from ``baseline`` (a run of the same seed).

  Raises:
    SystemExit: when there is no baseline of this seed, it differs in sizes or
      steps, or it has no ``bp`` row at one of the run's depths.
  """
  if baseline is None:
    raise SystemExit(f"lm_depth.py: no --baseline run of seed {seed}; give one per seed")
  diff = sorted(k for k in SIZES if run["args"].get(k) != baseline["args"].get(k))
  if diff:
    raise SystemExit(f"lm_depth.py: the seed-{seed} --baseline run differs in {diff}; a "
                     "baseline must train the same sizes for the same steps")
  depths = {}
  for depth, summary in run["depths"].items():
    bp = baseline["depths"].get(depth, {"rows": {}})["rows"].get("bp")
    if bp is None:
      raise SystemExit(f"lm_depth.py: the seed-{seed} --baseline run has no bp row at depth "
                       f"{depth}; run it with --rows bp --depths {depth}")
    rows = {**summary["rows"], "bp": bp}
    depths[depth] = {**summary, "rows": rows, **summarise(rows)}
  return {**run, "args": with_bp_settings(run["args"], None), "depths": depths}


def baselines_by_seed(baseline_paths: list[str]) -> dict[int, dict]:
  """The ``--baseline`` files' runs by seed (``by_seed_merged``), checked alike but for the seed."""
  baselines = by_seed_merged(baseline_paths)
  same_but_seed(baselines, "--baseline runs")
  return baselines


def baseline_note(baseline_paths: list[str], baseline_args: dict, run_args: dict) -> dict:
  """``out["baseline"]``: where the ``bp`` rows came from, and the settings they differ in."""
  return {"paths": list(baseline_paths), "args": baseline_args,
          "differs_in": differences(baseline_args, run_args, frozenset({"seed"}))}


def merged_against_baseline(run: dict, baseline_paths: list[str]) -> dict:
  """A ``merge``d run (one seed) with each depth's ``bp`` row from its seed's baseline run."""
  baselines = baselines_by_seed(baseline_paths)
  seed = run["args"]["seed"]
  out = against_baseline(run, seed, baselines.get(seed))
  out["baseline"] = baseline_note(baseline_paths, baselines[seed]["args"], run["args"])
  return out


def baseline_settings(out: dict) -> str:
  """The settings in which ``out``'s ``--baseline`` runs differ from its own runs.

  Examples:
    >>> baseline_settings({"baseline": {"args": {"lr": 0.003, "norm": "post"},
    ...                                 "differs_in": ["lr"]}})
    'lr=0.003'
  """
  return ", ".join(f"{k}={out['baseline']['args'][k]}"
                   for k in out["baseline"]["differs_in"]) or "the same settings"


def own_bp_settings(args: dict) -> str:
  """The bp row's own settings (``--bp_lr``, ``--bp_warmup``, ``--bp_residual_init``), if any.

  Examples:
    >>> own_bp_settings({"lr": 0.005, "bp_lr": 0.003, "bp_warmup": None})
    'lr=0.003'
  """
  return ", ".join(f"{k}={args[f'bp_{k}']}" for k in BP_OWN if args.get(f"bp_{k}") is not None)


def print_baseline(out: dict) -> None:
  """One line naming the backprop row's own settings: the ``--baseline`` runs', or ``--bp_*``."""
  if "baseline" in out:
    print(f"bp: the --baseline runs' backprop ({baseline_settings(out)})")
  elif own_bp_settings(out.get("args", {})):
    print(f"bp: backprop at its own {own_bp_settings(out['args'])}")


def across_seeds(paths: list[str], baseline_paths: list[str] = ()) -> dict:
  """Each row's validation loss and each closure over seeds, from per-seed ``--json`` files.

  The files of one seed are merged first (``merge``: rows run in separate
  processes), so ``seed0.json levers0.json seed1.json ...`` is fine. A row or
  closure counts over the seeds that have it. With ``baseline_paths``, each
  seed's ``bp`` row comes from those files' run of that seed (backprop at its
  own settings: its best learning rate, schedule or initialisation), and every
  closure is against it.

  Returns:
    ``{"seeds": [...], "depths": {depth: {"rows": {row: spread}, "gap_closure": spread,
    "levers": {lever: spread}, "dfa_lead_over_last_block": spread}}}`` (see ``spread``;
    a figure no seed has is left out). A row that records its ``digital`` share (the
    hybrid rows, DFA) keeps it beside its spread.

  Raises:
    SystemExit: when the runs, or the baseline runs, differ in anything but the seed
      (sizes, steps, settings).
  """
  runs = by_seed_merged(paths)
  same_but_seed(runs, "runs")
  first_seed, first = next(iter(runs.items()))
  baseline_args = None
  if baseline_paths:
    baselines = baselines_by_seed(baseline_paths)
    runs = {seed: against_baseline(run, seed, baselines.get(seed)) for seed, run in runs.items()}
    baseline_args = baselines[first_seed]["args"]
  depths: dict[str, dict] = {}
  for seed, run in runs.items():
    for depth, summary in run["depths"].items():
      into = depths.setdefault(depth, {"rows": {}, "gap_closure": {}, "levers": {},
                                       "dfa_lead_over_last_block": {}, "digital": {}})
      for row, result in summary["rows"].items():
        into["rows"].setdefault(row, {})[seed] = result["val_loss"]
        if "digital" in result:  # a FLOP share: the same at every seed of one size
          into["digital"][row] = result["digital"]
      for key in ("gap_closure", "dfa_lead_over_last_block"):
        if summary[key] is not None:
          into[key][seed] = summary[key]
      for lever, closure in summary["levers"].items():
        into["levers"].setdefault(lever, {})[seed] = closure
  out = {"seeds": list(runs), "args": first["args"], "depths": {}}
  if baseline_args is not None:
    out["baseline"] = baseline_note(baseline_paths, baseline_args, first["args"])
  for depth, into in sorted(depths.items(), key=lambda item: int(item[0])):
    rows = {row: spread(v) for row, v in into["rows"].items()}
    for row, share in into["digital"].items():
      rows[row]["digital"] = share
    out["depths"][depth] = {
        "rows": rows,
        "levers": {lever: spread(v) for lever, v in into["levers"].items()},
        **{key: spread(into[key]) for key in ("gap_closure", "dfa_lead_over_last_block")
           if into[key]}}
  return out


def _pm(figure: dict, digits: int = 3) -> str:
  std = "" if figure["std"] is None else f" ± {figure['std']:.{digits}f}"
  return f"{figure['mean']:.{digits}f}{std} (n={figure['n']})"


def print_seeds(out: dict) -> None:
  """``across_seeds``'s table: each row's loss and each closure as mean ± sample std."""
  print(f"seeds {out['seeds']}; mean ± sample standard deviation over the seeds that have it")
  print_baseline(out)
  for depth, summary in out["depths"].items():
    for row, figure in summary["rows"].items():
      print(f"{depth:>5} {row:>18} val loss {_pm(figure)}  per seed "
            + ", ".join(f"{seed}: {v:.3f}" for seed, v in zip(figure["seeds"], figure["values"])))
    if "gap_closure" in summary:
      print(f"{depth:>5} gap closure {_pm(summary['gap_closure'], 2)}")
    for lever, figure in summary["levers"].items():
      print(f"{depth:>5} gap closure with {lever}: {_pm(figure, 2)}")
    if "dfa_lead_over_last_block" in summary:
      print(f"{depth:>5} DFA's lead over the last-block control "
            f"{_pm(summary['dfa_lead_over_last_block'])} nats")


def loss_and_std(row: dict) -> tuple[float, float | None]:
  """A row's validation loss and its spread: one run's (std None), or the mean over seeds.

  Examples:
    >>> loss_and_std({"val_loss": 2.5}), loss_and_std(spread({0: 2.0, 1: 3.0}))
    ((2.5, None), (2.5, 0.7071067811865476))
  """
  if "val_loss" in row:
    return row["val_loss"], None
  return row["mean"], row["std"]


def hybrid_curve(rows: dict, depth: int) -> list[tuple[int, float, float | None, float | None]]:
  """``(K, val loss, std, digital share)`` of one depth's rows: DFA is K=0, backprop K=depth.

  ``rows`` are one run's (``--merge``; std None) or ``across_seeds``'s (the mean
  and sample std over seeds). DFA's share is the head's, which its row records;
  ``None`` for a row written before it did (the figure then labels it "head only").

  Examples:
    >>> rows = {"dfa": {"val_loss": 2.5, "digital": 0.006},
    ...         "hybrid_2": {"val_loss": 2.2, "digital": 0.3}, "bp": {"val_loss": 2.0}}
    >>> hybrid_curve(rows, 8)
    [(0, 2.5, None, 0.006), (2, 2.2, None, 0.3), (8, 2.0, None, 1.0)]
  """
  points = [(0, *loss_and_std(rows["dfa"]), rows["dfa"].get("digital"))] if "dfa" in rows else []
  points += sorted((int(name.split("_")[1]), *loss_and_std(r), r["digital"])
                   for name, r in rows.items() if name.startswith("hybrid_"))
  if "bp" in rows:
    points.append((depth, *loss_and_std(rows["bp"]), 1.0))
  return points
