"""The depth benchmark's levers: each record names real settings, and the two it implements work."""

from __future__ import annotations

import dataclasses
import doctest
import importlib.util
import json
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dfax

REPO = pathlib.Path(__file__).resolve().parents[2]
BENCHMARKS = REPO / "benchmarks"


@pytest.fixture(scope="module")
def lm_depth():
  spec = importlib.util.spec_from_file_location("bench_lm_depth", BENCHMARKS / "lm_depth.py")
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module  # its dataclasses look their module up there
  spec.loader.exec_module(module)
  return module


def test_every_lever_sets_only_arguments_the_benchmark_has_and_changes_one(lm_depth):
  defaults = vars(lm_depth.parse([]))
  for name, lever in lm_depth.LEVERS.items():
    assert lever.settings and set(lever.settings) <= set(defaults), name
    assert any(defaults[k] != v for k, v in lever.settings.items()), f"{name} changes nothing"
    changed = lm_depth.with_lever(lm_depth.parse([]), name)
    assert all(getattr(changed, k) == v for k, v in lever.settings.items())


def test_unroll_compiles_each_depth_unrolled_and_still_merges_with_rolled_runs(lm_depth):
  assert lm_depth.config_for(lm_depth.parse(["--unroll"]), 8, 65).scan_unroll == 8
  assert lm_depth.config_for(lm_depth.parse([]), 8, 65).scan_unroll == 1
  rolled, unrolled = vars(lm_depth.parse([])), vars(lm_depth.parse(["--unroll"]))
  differences = sys.modules["depth_report"].differences  # lm_depth's report module
  assert differences(rolled, unrolled) == []
  assert differences(rolled, vars(lm_depth.parse(["--norm", "post"]))) == ["norm"]


def test_the_bp_row_trains_at_its_own_settings_as_a_separate_run_would(lm_depth, capsys,
                                                                     tmp_path):
  """``--bp_lr/--bp_residual_init`` give the bp row exactly what a bp-only run at those
  settings gets, and leave the DFA rows as they are without them; merging the two
  separate runs gives what the one process gives."""
  quick = ["--quick", "--rows"]
  one_process = lm_depth.main([*quick, "dfa,bp", "--lr", "5e-3", "--bp_lr", "3e-3",
                               "--bp_residual_init", "depth"])
  together = one_process["depths"]["2"]["rows"]
  assert "bp: backprop at its own lr=0.003, residual_init=depth" in capsys.readouterr().out
  bp_json, dfa_json = str(tmp_path / "bp.json"), str(tmp_path / "dfa.json")
  bp_alone = lm_depth.main([*quick, "bp", "--lr", "3e-3", "--residual_init", "depth",
                            "--json", bp_json])
  dfa_alone = lm_depth.main([*quick, "dfa", "--lr", "5e-3", "--json", dfa_json])
  bp_at_dfa_settings = lm_depth.main([*quick, "bp", "--lr", "5e-3"])
  assert together["bp"]["val_loss"] == bp_alone["depths"]["2"]["rows"]["bp"]["val_loss"]
  assert together["dfa"]["val_loss"] == dfa_alone["depths"]["2"]["rows"]["dfa"]["val_loss"]
  assert together["bp"]["val_loss"] != bp_at_dfa_settings["depths"]["2"]["rows"]["bp"]["val_loss"]

  merged = lm_depth.main(["--merge", bp_json, dfa_json])
  assert "bp: backprop at its own lr=0.003, residual_init=depth" in capsys.readouterr().out
  losses = lambda rows: {row: (r["val_loss"], r["train_loss"]) for row, r in rows.items()}
  assert losses(merged["depths"]["2"]["rows"]) == losses(together)
  run_defining = set(one_process["args"]) - sys.modules["depth_report"].NOT_THE_RUN
  assert {k: merged["args"][k] for k in run_defining} == {
      k: one_process["args"][k] for k in run_defining}


def test_merge_lets_only_the_bp_row_differ_and_only_in_its_own_settings(lm_depth, tmp_path):
  dfa = _run(tmp_path, "dfa.json", {"dfa": 2.5, "zero": 3.0}, lr=0.005, bp_lr=None)
  bp = _run(tmp_path, "bp.json", {"bp": 2.0}, lr=0.003, bp_lr=None)
  merged = lm_depth.main(["--merge", dfa, bp])
  assert (merged["args"]["lr"], merged["args"]["bp_lr"]) == (0.005, 0.003)
  assert merged["depths"]["8"]["gap_closure"] == pytest.approx(0.5)
  other_steps = _run(tmp_path, "steps.json", {"bp": 2.0}, lr=0.003, steps=20)
  with pytest.raises(SystemExit, match=r"the bp row of .*steps.json differs .* in \['steps'\]"):
    lm_depth.main(["--merge", dfa, other_steps])
  zero_at_bp_lr = _run(tmp_path, "zero.json", {"zero": 3.0}, lr=0.003)
  with pytest.raises(SystemExit, match=r"the zero row of .*zero.json differs .* in \['lr'\]"):
    lm_depth.main(["--merge", dfa, zero_at_bp_lr])
  # a seed without a bp row compares with one whose bp row trained at its own settings
  seed1 = _run(tmp_path, "s1.json", {"dfa": 2.6, "zero": 3.1}, lr=0.005, seed=1, bp_lr=0.003)
  out = lm_depth.main(["--seeds", dfa, bp, seed1])
  rows = out["depths"]["8"]["rows"]
  assert rows["dfa"]["n"] == 2 and rows["bp"]["n"] == 1


def test_an_unknown_lever_is_refused_naming_the_choices(lm_depth):
  with pytest.raises(SystemExit, match="unknown lever 'nope'; choose from .*macro"):
    lm_depth.with_lever(lm_depth.parse([]), "nope")
  with pytest.raises(SystemExit, match="unknown lever 'nope'.* join several with \\+"):
    lm_depth.with_lever(lm_depth.parse([]), "reuse+nope")


def test_joined_levers_apply_every_setting(lm_depth):
  joined = lm_depth.with_lever(lm_depth.parse([]), "post_ln+reuse+b2_0.95")
  assert (joined.norm, joined.preset, joined.projector, joined.reuse, joined.b2) == (
      "post", "macro_out", "shared", True, 0.95)


def test_the_opu_levers_change_how_the_error_is_encoded(lm_depth):
  """On a near-uniform error, topk, the unternarised error, the kept pixels and the bit
  planes each change what comes back."""
  points = [dfax.PointSpec("a", (4, 16), "float32")]
  probs = jax.nn.softmax(0.01 * jax.random.normal(jax.random.key(0), (4, 65)))
  error = probs - jax.nn.one_hot(jnp.arange(4), 65)
  sent = {name: lm_depth.projector("dfa", lm_depth.with_lever(lm_depth.parse([]), name))(
      error, points)[0] for name in ("opu", "opu_topk", "opu_analog", "opu_keep", "opu_bits1",
                                     "opu_bits4")}
  assert all(bool(jnp.all(jnp.isfinite(c))) for c in sent.values())
  for name in ("opu_topk", "opu_analog", "opu_keep", "opu_bits1", "opu_bits4"):
    assert not np.allclose(sent["opu"], sent[name]), name


def test_rows_start_from_the_config_residual_init(lm_depth):
  """``--residual_init depth`` reaches the model's config: the row's initial parameters are
  ``TransformerConfig.residual_init``'s, from the same seed."""
  args = lm_depth.parse(["--quick", "--residual_init", "depth"])
  config = lm_depth.config_for(args, 2, 11)
  assert config.residual_init == "depth"
  deep = lm_depth.initial_params(config, args)
  plain = lm_depth.initial_params(dataclasses.replace(config, residual_init="default"), args)
  blocks = deep["params"]["blocks"]
  np.testing.assert_array_equal(blocks["fc2"]["kernel"],
                                plain["params"]["blocks"]["fc2"]["kernel"] * 0.5)
  np.testing.assert_array_equal(blocks["fc1"]["kernel"],
                                plain["params"]["blocks"]["fc1"]["kernel"])


def test_rms_normalised_feedback_has_unit_rms_per_token(lm_depth):
  points = [dfax.PointSpec("a", (2, 5, 7), "float32"),
            dfax.PointSpec("b", (2, 5, 3), "float32")]
  error = jax.random.normal(jax.random.key(0), (2, 5, 4)) * 3.0
  proj = lm_depth.rms_normalised(dfax.projectors.gaussian(jax.random.key(1)))
  for c in proj(error, points):
    np.testing.assert_allclose(jnp.sqrt(jnp.mean(c ** 2, axis=-1)), 1.0, rtol=1e-5)


def _run(tmp_path, name, rows, depth="8", **args):
  base = {"steps": 10, "d_model": 8, "heads": 2, "d_ff": 16, "seq": 8, "batch": 2, "seed": 0,
          "norm": "pre", "eval_batches": 1, "warmup": 1}
  path = tmp_path / name
  path.write_text(json.dumps({"args": {**base, **args}, "depths": {depth: {"rows": {
      row: r if isinstance(r, dict) else {"val_loss": r} for row, r in rows.items()}}}}))
  return str(path)


def test_merge_joins_rows_of_separate_runs_and_recomputes_the_closures(lm_depth, tmp_path):
  a = _run(tmp_path, "a.json", {"dfa": 2.5, "zero": 3.0, "bp": 2.0})
  b = _run(tmp_path, "b.json", {"dfa:tied": 2.4, "hybrid_2": {"val_loss": 2.3, "digital": 0.25}})
  out = lm_depth.main(["--merge", a, b, "--plot_levers", str(tmp_path / "levers.png"),
                       "--plot", str(tmp_path / "hybrid.png")])
  summary = out["depths"]["8"]
  assert set(summary["rows"]) == {"dfa", "zero", "bp", "dfa:tied", "hybrid_2"}
  assert summary["gap_closure"] == pytest.approx(0.5)
  assert summary["levers"] == {"tied": pytest.approx(0.6)}
  for png in ("levers.png", "hybrid.png"):
    assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_merge_refuses_runs_that_did_not_start_alike(lm_depth, tmp_path):
  a = _run(tmp_path, "a.json", {"dfa": 2.5})
  b = _run(tmp_path, "b.json", {"zero": 3.0}, seed=1)
  with pytest.raises(SystemExit, match=r"differs from .* in \['seed'\]"):
    lm_depth.main(["--merge", a, b])


def test_merge_refuses_rows_of_one_name_made_with_other_settings(lm_depth, tmp_path):
  """A post-LN run's "bp" row is not the pre-LN run's: merged, one would replace the other."""
  a = _run(tmp_path, "a.json", {"dfa": 2.5, "bp": 1.8}, norm="pre", bp_blocks="")
  b = _run(tmp_path, "b.json", {"bp": 1.7}, norm="post")
  with pytest.raises(SystemExit, match=r"differs from .* in \['norm'\]"):
    lm_depth.main(["--merge", a, b])
  c = _run(tmp_path, "c.json", {"dfa:tied": 2.4}, levers="tied")
  assert set(lm_depth.main(["--merge", a, c])["depths"]["8"]["rows"]) == {"dfa", "bp", "dfa:tied"}


def test_merge_and_seeds_refuse_a_missing_or_foreign_file_in_one_line(lm_depth, tmp_path):
  a = _run(tmp_path, "a.json", {"dfa": 2.5})
  with pytest.raises(SystemExit, match=r"cannot read .*nope.json \(FileNotFoundError\)"):
    lm_depth.main(["--merge", a, str(tmp_path / "nope.json")])
  (tmp_path / "other.json").write_text('{"val_loss": 2.0}')
  with pytest.raises(SystemExit, match="other.json is not an lm_depth.py --json result"):
    lm_depth.main(["--seeds", a, str(tmp_path / "other.json")])
  (tmp_path / "broken.json").write_text('{"args": ')
  with pytest.raises(SystemExit, match=r"cannot read .*broken.json \(JSONDecodeError\)"):
    lm_depth.main(["--seeds", a, "--baseline", str(tmp_path / "broken.json")])


def test_seeds_merge_each_seeds_files_then_give_mean_and_sample_std(lm_depth, tmp_path, capsys):
  paths = [_run(tmp_path, "s0.json", {"dfa": 2.5, "zero": 3.0, "bp": 2.0}),
           _run(tmp_path, "s0_levers.json", {"dfa:tied": 2.4}),
           _run(tmp_path, "s1.json", {"dfa": 2.7, "zero": 3.2, "bp": 2.2, "dfa:tied": 2.5},
                seed=1)]
  json_path = tmp_path / "seeds.json"
  out = lm_depth.main(["--seeds", *paths, "--json", str(json_path)])
  assert out["seeds"] == [0, 1] and json.loads(json_path.read_text())["seeds"] == [0, 1]
  summary = out["depths"]["8"]
  assert summary["rows"]["dfa"]["mean"] == pytest.approx(2.6)
  assert summary["rows"]["dfa"]["std"] == pytest.approx(np.std([2.5, 2.7], ddof=1))
  assert summary["gap_closure"]["values"] == pytest.approx([0.5, 0.5])
  # the seed-0 lever row came from its own file, closed against seed 0's controls
  assert summary["levers"]["tied"]["values"] == pytest.approx([0.6, 0.7])
  assert summary["levers"]["tied"]["seeds"] == [0, 1]
  assert summary["rows"]["dfa:tied"]["seeds"] == [0, 1]
  assert "dfa_lead_over_last_block" not in summary
  printed = capsys.readouterr().out
  assert "gap closure with tied: 0.65 ± 0.07 (n=2)" in printed
  assert "dfa val loss 2.600 ± 0.141 (n=2)  per seed 0: 2.500, 1: 2.700" in printed


def test_seeds_refuse_runs_of_other_sizes(lm_depth, tmp_path):
  a = _run(tmp_path, "a.json", {"dfa": 2.5})
  b = _run(tmp_path, "b.json", {"dfa": 2.6}, seed=1, steps=20, norm="post")
  with pytest.raises(SystemExit,
                     match=r"seed-1 runs differ from the seed-0 runs in \['norm', 'steps'\]"):
    lm_depth.main(["--seeds", a, b])


def test_seeds_take_bp_from_the_baseline_runs_of_each_seed(lm_depth, tmp_path, capsys):
  """A backprop run at its own settings (post-LN, another init) is each seed's baseline."""
  paths = [_run(tmp_path, "s0.json", {"dfa": 2.5, "zero": 3.0, "bp": 2.2}, norm="post", lr=5e-3),
           _run(tmp_path, "s1.json", {"dfa": 2.7, "zero": 3.2}, seed=1, norm="post", lr=5e-3)]
  baselines = [_run(tmp_path, f"bp{seed}.json", {"bp": bp}, seed=seed, norm="pre", lr=3e-3)
               for seed, bp in ((0, 2.0), (1, 1.7))]
  out = lm_depth.main(["--seeds", *paths, "--baseline", *baselines])
  summary = out["depths"]["8"]
  assert summary["rows"]["bp"]["values"] == pytest.approx([2.0, 1.7])
  assert summary["gap_closure"]["values"] == pytest.approx([0.5, 0.5 / 1.5])
  assert out["baseline"]["differs_in"] == ["lr", "norm"]
  assert "bp: the --baseline runs' backprop (lr=0.003, norm=pre)" in capsys.readouterr().out
  # without the baseline, seed 0's own bp row counts and seed 1 has no closure
  assert lm_depth.main(["--seeds", *paths])["depths"]["8"]["gap_closure"]["values"] == (
      pytest.approx([0.5 / 0.8]))


def test_seeds_refuse_a_baseline_of_other_sizes_mixed_settings_or_missing_a_seed(lm_depth, tmp_path):
  run = _run(tmp_path, "s0.json", {"dfa": 2.5, "zero": 3.0})
  other_steps = _run(tmp_path, "bp_steps.json", {"bp": 2.0}, steps=20)
  with pytest.raises(SystemExit, match=r"seed-0 --baseline run differs in \['steps'\]"):
    lm_depth.main(["--seeds", run, "--baseline", other_steps])
  seed1 = _run(tmp_path, "bp1.json", {"bp": 2.0}, seed=1)
  with pytest.raises(SystemExit, match="no --baseline run of seed 0"):
    lm_depth.main(["--seeds", run, "--baseline", seed1])
  no_bp = _run(tmp_path, "bp_none.json", {"zero": 3.0})
  with pytest.raises(SystemExit, match="no bp row at depth 8"):
    lm_depth.main(["--seeds", run, "--baseline", no_bp])
  mixed = [_run(tmp_path, "bp0_pre.json", {"bp": 2.0}, norm="pre"),
           _run(tmp_path, "bp1_post.json", {"bp": 2.0}, seed=1, norm="post")]
  both = [run, _run(tmp_path, "s1.json", {"dfa": 2.5, "zero": 3.0}, seed=1)]
  with pytest.raises(SystemExit, match=r"seed-1 --baseline runs differ from the seed-0 "
                                       r"--baseline runs in \['norm'\]"):
    lm_depth.main(["--seeds", *both, "--baseline", *mixed])
  with pytest.raises(SystemExit):  # argparse: --baseline needs --seeds or --merge
    lm_depth.main(["--baseline", seed1])


def test_merge_takes_bp_from_the_baseline_run_of_its_seed(lm_depth, tmp_path, capsys):
  """The hybrid curve's K=depth point and the closures come from the strongest backprop."""
  a = _run(tmp_path, "a.json", {"dfa": 2.5, "zero": 3.0, "bp": 2.9}, seed=1, lr=5e-3)
  b = _run(tmp_path, "b.json", {"hybrid_2": {"val_loss": 2.3, "digital": 0.25}}, seed=1,
           lr=5e-3)
  baselines = [_run(tmp_path, "bp0.json", {"bp": 1.5}, lr=3e-3),
               _run(tmp_path, "bp1.json", {"bp": 2.0}, seed=1, lr=3e-3)]
  png = tmp_path / "hybrid.png"
  out = lm_depth.main(["--merge", a, b, "--baseline", *baselines, "--plot", str(png)])
  rows = out["depths"]["8"]["rows"]
  assert rows["bp"]["val_loss"] == 2.0 and out["depths"]["8"]["gap_closure"] == pytest.approx(0.5)
  assert out["baseline"]["differs_in"] == ["lr"]
  assert "bp: the --baseline runs' backprop (lr=0.003)" in capsys.readouterr().out
  assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  with pytest.raises(SystemExit, match="no --baseline run of seed 1"):
    lm_depth.main(["--merge", a, "--baseline", baselines[0]])


def test_seeds_join_depths_run_apart_and_plot_each_row_against_depth(lm_depth, tmp_path):
  """One file per depth and seed, as long rows are run: --seeds joins them into the depth table."""
  paths, baselines = [], []
  for seed in (0, 1):
    for depth, dfa in (("2", 2.0), ("12", 2.4)):
      paths.append(_run(tmp_path, f"d{depth}_s{seed}.json", {"dfa": dfa + seed / 10, "zero": 3.0,
                                                              "last_block": 2.8},
                        depth=depth, seed=seed, lr=5e-3))
      baselines.append(_run(tmp_path, f"bp{depth}_s{seed}.json", {"bp": 1.0}, depth=depth,
                            seed=seed, lr=3e-3))
  png = tmp_path / "depths.png"
  out = lm_depth.main(["--seeds", *paths[::-1], "--baseline", *baselines, "--plot_depths",
                       str(png)])
  assert list(out["depths"]) == ["2", "12"]  # in order of depth, whatever the files' order
  assert out["depths"]["12"]["gap_closure"]["values"] == pytest.approx([0.3, 0.25])
  assert out["depths"]["2"]["dfa_lead_over_last_block"]["values"] == pytest.approx([0.8, 0.7])
  assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  with pytest.raises(SystemExit):  # argparse: --plot_depths needs --seeds
    lm_depth.main(["--merge", paths[0], "--plot_depths", str(png)])
  with pytest.raises(SystemExit):  # one seed's figure, not silently dropped by --seeds
    lm_depth.main(["--seeds", *paths, "--plot_levers", str(tmp_path / "x.png")])


def test_seeds_draw_the_hybrid_curve_as_means_with_their_spread(lm_depth, tmp_path):
  """The hybrid rows of each seed, with backprop from the baseline runs: K's mean and std."""
  paths, baselines = [], []
  for seed, (dfa, hybrid) in enumerate(((2.5, 2.3), (2.7, 2.4))):
    paths.append(_run(tmp_path, f"s{seed}.json", {"dfa": {"val_loss": dfa, "digital": 0.01},
                                                  "zero": 3.0, "last_block": 2.8}, seed=seed))
    paths.append(_run(tmp_path, f"h{seed}.json", {"hybrid_2": {"val_loss": hybrid,
                                                               "digital": 0.25}}, seed=seed))
    baselines.append(_run(tmp_path, f"bp{seed}.json", {"bp": 2.0 + seed / 10}, seed=seed,
                          lr=3e-3))
  png = tmp_path / "hybrid.png"
  out = lm_depth.main(["--seeds", *paths, "--baseline", *baselines, "--plot", str(png)])
  curve = sys.modules["depth_report"].hybrid_curve(out["depths"]["8"]["rows"], 8)
  assert [(k, share) for k, _, _, share in curve] == [(0, 0.01), (2, 0.25), (8, 1.0)]
  assert [loss for _, loss, _, _ in curve] == pytest.approx([2.6, 2.35, 2.05])
  assert [std for _, _, std, _ in curve] == pytest.approx([0.1 * 2 ** 0.5, 0.05 * 2 ** 0.5,
                                                           0.05 * 2 ** 0.5])
  assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("name", ["lm_depth", "depth_report", "depth_levers", "depth_plots",
                                  "lm_flops"])
def test_the_benchmark_modules_examples_run(lm_depth, name):
  module = lm_depth if name == "lm_depth" else sys.modules[name]
  result = doctest.testmod(module)
  assert result.attempted > 0 and result.failed == 0, result
