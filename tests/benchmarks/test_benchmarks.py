"""Every benchmarks/*.py runs in its small mode (``--quick``): a broken benchmark fails here.

Each script runs as a user would run it, a subprocess from the repository
root, on the 8 host devices the suite uses; the test reads what it prints and
writes (its JSON, its figures). The timings a quick run measures are not
figures: only their form is checked (present, finite, positive). ``timing.py``
is the benchmarks' library; its functions are tested directly. The longest
runs (the Transformer step, the pipelines, ``gpu_suite.sh --quick``) are
marked slow. The benchmarks ``gpu_suite.sh`` runs are checked on the suite's
own quick run, so that each runs once.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import pathlib
import subprocess
import sys

import jax.numpy as jnp
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
BENCHMARKS = REPO / "benchmarks"
# benchmarks/*.py that are helper modules, not benchmarks
LIBRARIES = {"timing", "hlo_schedule", "depth_report", "depth_plots", "depth_levers",
             "handwritten_lm", "lm_flops"}
TIMEOUT_S = 600  # per script; a quick run takes seconds to a minute on a busy 2-core CPU
PNG = b"\x89PNG\r\n\x1a\n"


def _env() -> dict:
  env = dict(os.environ)
  env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
  env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
  env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH")
                                   else "")
  return env


def _run(*argv: str) -> str:
  proc = subprocess.run([*argv], cwd=REPO, env=_env(), capture_output=True, text=True,
                        timeout=TIMEOUT_S)
  assert proc.returncode == 0, f"{argv} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
  return proc.stdout


def _script(name: str, *args: str) -> str:
  return _run(sys.executable, f"benchmarks/{name}.py", "--quick", *args)


def _positive(value) -> bool:
  return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def _assert_ratios(result: dict, *keys: str) -> None:
  for key in keys:
    assert _positive(result[key]), (key, result[key])


def _assert_png(path: pathlib.Path) -> None:
  assert path.is_file(), path
  assert path.read_bytes()[:8] == PNG, path
  assert path.stat().st_size > 1000, path  # a drawn figure, not an empty canvas


# --- one check per benchmark --------------------------------------------------------------

def check_step_time_mlp(out: str, result: dict, figures: pathlib.Path):
  assert result["model"] == "mlp" and result["quick"] is True
  assert set(result["ms"]) == {"handwritten_dfa_grad", "forward", "bp", "dfa", "dfa_hadamard",
                               "bp_grad", "dfa_grad"}
  assert all(_positive(ms) for ms in result["ms"].values()), result["ms"]
  _assert_ratios(result, "dfa_over_bp", "dfa_hadamard_over_bp", "dfa_over_bp_gradient_only",
                 "dfa_over_forward", "bp_over_forward", "handwritten_dfa_over_bp_gradient_only")
  assert "DFA/BP = " in out and "hand-written DFA gradient / BP gradient = " in out, out


def check_step_time_transformer(tmp_path):
  out = _script("step_time", "--model", "transformer", "--preset", "macro_out", "--norm", "post",
                "--json", str(tmp_path / "step.json"))
  result = json.loads((tmp_path / "step.json").read_text())
  assert result["model"] == "transformer"
  assert set(result["ms"]) == {"handwritten_dfa_grad", "forward", "bp", "dfa", "dfa_hadamard",
                               "bp_grad", "dfa_grad"}
  _assert_ratios(result, "dfa_over_bp", "dfa_hadamard_over_bp", "dfa_over_bp_gradient_only",
                 "dfa_over_forward", "bp_over_forward", "handwritten_dfa_over_bp_gradient_only",
                 "dfa_over_handwritten_gradient_only")
  assert 0 < result["analytic_flops"]["dfa_over_bp_gradient"] < 1
  assert "DFA/BP = " in out and "[transformer, batch 2," in out, out
  assert "dfax DFA gradient / hand-written DFA gradient = " in out, out
  assert "analytic floor, matmul FLOPs: DFA/BP gradient = " in out, out


def check_compile_1b(tmp_path):
  out = _script("compile_1b", "--json", str(tmp_path / "compile.json"))
  result = json.loads((tmp_path / "compile.json").read_text())
  assert result["quick"] is True and result["method"] == "dfa" and result["mesh"] == [2, 4]
  assert 0 < result["params"] < 10 ** 6  # the tiny config, not the 1.14B one
  assert result["bytes_per_device"]["arguments"] > 0 and result["lower_compile_s"] > 0
  assert result["collectives"]["all-reduce"] > 0  # data-parallel gradients are reduced
  assert "mesh=2x4" in out and "collectives:" in out, out


def check_hadamard_vs_dense(tmp_path):
  out = _script("hadamard_vs_dense", "--json", str(tmp_path / "h.json"))
  result = json.loads((tmp_path / "h.json").read_text())
  assert (result["size"], result["batch"]) == (1024, 8)
  assert set(result["ms"]) == {"dense", "hadamard"}
  _assert_ratios(result, "hadamard_speedup")
  assert "hadamard speed-up = " in out, out


def check_opu_projector(out: str, result: dict, figures: pathlib.Path):
  assert set(result["ms"]) == {"digital", "opu", "opu_ideal", "floor"}
  _assert_ratios(result, "opu_over_digital", "opu_ideal_over_digital", "floor_over_digital")
  assert "simulated OPU / digital = " in out, out


def check_opu_cost_plot(tmp_path):
  out = _script("opu_cost_plot", "--out", str(tmp_path / "opu_cost.png"))
  _assert_png(tmp_path / "opu_cost.png")
  assert sum(line.startswith("batch ") for line in out.splitlines()) == 3, out
  assert "optical faster from n = " in out, out  # the cost model has a crossover


def check_layer_parallel(out: str, result: dict, figures: pathlib.Path):
  (row,) = result["rows"]
  assert set(row["ms"]) == {"reverse_scan", "scan", "vmap"}
  _assert_ratios(row, "vmap_over_reverse_scan", "vmap_over_scan")
  _assert_png(figures / "pipeline_layer_parallel.png")
  assert "vmap/reverse_scan" in out, out


def check_pipeline(out: str, result: dict, figures: pathlib.Path):
  assert result["devices"] == 8
  assert {r["method"] for r in result["table"]} == {"dfa", "bp"}
  for row in result["table"]:
    assert row["critical_mflop"] > 0 and 0 <= row["bubble"] < 1, row
  assert result["timing"] and all(_positive(r["dfa_over_bp"]) for r in result["timing"])
  assert result["model_1b"] and all(_positive(r["dfa_over_bp"]) for r in result["model_1b"])
  for name in ("pipeline_bubble.png", "pipeline_1b_model.png"):
    _assert_png(figures / name)
  assert "1.14B S= 8" in out, out


def check_lm_depth(tmp_path):
  out = _script("lm_depth", "--json", str(tmp_path / "depth.json"), "--plot",
                str(tmp_path / "hybrid.png"), "--levers", "rms+residual_init")
  result = json.loads((tmp_path / "depth.json").read_text())
  rows = result["depths"]["2"]["rows"]
  assert set(rows) == {"dfa", "zero", "last_block", "bp", "hybrid_1",  # --quick adds K=1
                       "dfa:rms+residual_init"}
  closure = result["depths"]["2"]["levers"]["rms+residual_init"]
  assert closure == pytest.approx((rows["zero"]["val_loss"] - rows["dfa:rms+residual_init"][
      "val_loss"]) / (rows["zero"]["val_loss"] - rows["bp"]["val_loss"]))
  assert "gap closure with rms+residual_init" in out, out
  assert rows["dfa:rms+residual_init"]["val_loss"] != rows["dfa"]["val_loss"]
  for row in rows.values():
    assert math.isfinite(row["val_loss"]) and _positive(row["seconds"]), row
  assert 0 < rows["dfa"]["digital"] < rows["hybrid_1"]["digital"] < 1  # DFA: the head only
  _assert_png(tmp_path / "hybrid.png")
  zero, dfa, bp = (rows[k]["val_loss"] for k in ("zero", "dfa", "bp"))
  assert result["depths"]["2"]["gap_closure"] == pytest.approx((zero - dfa) / (zero - bp))
  assert "gap closure" in out, out


slow = pytest.mark.slow
CASES = [  # (benchmark, check); a benchmark may have several
    pytest.param("step_time", check_step_time_transformer, id="step_time-transformer",
                 marks=slow),
    pytest.param("compile_1b", check_compile_1b, id="compile_1b", marks=slow),
    pytest.param("hadamard_vs_dense", check_hadamard_vs_dense, id="hadamard_vs_dense"),
    pytest.param("opu_cost_plot", check_opu_cost_plot, id="opu_cost_plot"),
    pytest.param("lm_depth", check_lm_depth, id="lm_depth", marks=slow),
]


# The benchmarks gpu_suite.sh runs are checked on the suite's own quick run (its part's log and
# JSON), so each runs once: {part: (benchmark, check)}.
SUITE_CHECKS = {"step_mlp": ("step_time", check_step_time_mlp),
                "layer_parallel": ("layer_parallel", check_layer_parallel),
                "opu_projector": ("opu_projector", check_opu_projector),
                "pipeline": ("pipeline", check_pipeline)}


def test_every_benchmark_has_a_quick_mode_test():
  scripts = {p.stem for p in BENCHMARKS.glob("*.py")} - LIBRARIES
  tested = {case.values[0] for case in CASES} | {b for b, _ in SUITE_CHECKS.values()}
  assert scripts == tested, (f"benchmarks without a quick-mode test here: {scripts - tested}; "
                             f"tests of missing benchmarks: {tested - scripts}")


@pytest.mark.parametrize("benchmark, check", CASES)
def test_quick_mode_runs(benchmark, check, tmp_path):
  assert (BENCHMARKS / f"{benchmark}.py").is_file()
  check(tmp_path)


# --- timing.py, the benchmarks' library -----------------------------------------------------

@pytest.fixture(scope="module")
def timing():
  spec = importlib.util.spec_from_file_location("bench_timing", BENCHMARKS / "timing.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_interleaved_samples_runs_each_function_once_per_round_in_shuffled_orders(timing):
  calls = []

  def fn(name):
    def call():
      calls.append(name)
      return jnp.zeros(())
    return call

  names = ["a", "b", "c", "d"]
  samples = timing.interleaved_samples({n: fn(n) for n in names}, repeats=6, warmup=2)
  assert set(samples) == set(names)
  assert all(len(s) == 6 and all(t >= 0 for t in s) for s in samples.values())
  assert calls[:8] == names * 2  # warm-up rounds in the given order
  rounds = [calls[8 + 4 * r: 12 + 4 * r] for r in range(6)]
  assert len(calls) == 8 + 24 and all(sorted(r) == names for r in rounds)
  assert len({tuple(r) for r in rounds}) > 1  # the order changes between rounds


def test_interleaved_medians_are_the_medians_of_the_samples(timing):
  fns = {"x": lambda: jnp.ones(3), "y": lambda: jnp.zeros(3)}
  medians = timing.interleaved_medians(fns, repeats=5, warmup=1)
  assert set(medians) == {"x", "y"} and all(m >= 0 for m in medians.values())


def test_median_ratio_pairs_the_samples_within_rounds(timing):
  samples = {"a": [1.0, 4.0, 100.0], "b": [2.0, 1.0, 400.0]}
  # per-round ratios 0.5, 4, 0.25 -> median 0.5; the ratio of the medians would be 4 / 2 = 2
  assert timing.median_ratio(samples, "a", "b") == 0.5
  assert timing.median_ratio(samples, "b", "a") == 2.0


# --- gpu_suite.sh ----------------------------------------------------------------------------

def test_gpu_suite_records_the_tests_part(tmp_path):
  """The tests part on a two-test selection: its summary line and exit code are recorded."""
  out = tmp_path / "suite"
  env = {"GPU_SUITE_PARTS": "tests",
         "GPU_SUITE_TESTS": "tests/benchmarks/test_benchmarks.py -k median_ratio_pairs "
                            "-p no:cacheprovider"}
  _run_suite(out, env)
  suite = json.loads((out / "suite.json").read_text())
  assert suite["exit_codes"] == {"tests": 0} and suite["parts"] == ["tests"]
  tests = json.loads((out / "tests.json").read_text())
  assert tests["exit_code"] == 0 and tests["failed"] == []
  assert tests["summary"].startswith("1 passed"), tests


@slow
def test_gpu_suite_quick_runs_every_benchmark_part(tmp_path):
  """Every part runs; the benchmarks' own checks read each part's log, JSON and figures."""
  out = tmp_path / "suite"
  _run_suite(out, {"GPU_SUITE_SKIP_TESTS": "1"})
  suite = json.loads((out / "suite.json").read_text())
  parts = {"step_mlp", "step_gpt2_small", "layer_parallel", "opu_projector", "pipeline"}
  assert suite["quick"] is True and suite["exit_codes"] == dict.fromkeys(parts, 0), suite
  for part in parts:
    assert isinstance(json.loads((out / f"{part}.json").read_text()), dict), part
  for part, (_, check) in SUITE_CHECKS.items():
    check((out / f"{part}.log").read_text(), json.loads((out / f"{part}.json").read_text()),
          out)
  gpt2 = json.loads((out / "step_gpt2_small.json").read_text())
  assert gpt2["size"] == "tiny" and _positive(gpt2["dfa_over_bp"]), gpt2
  assert _positive(gpt2["dfa_over_bp_gradient_only_unrolled"]), gpt2
  assert all(_positive(r) for r in gpt2["unrolled_over_rolled"].values()), gpt2
  dots = gpt2["dots_unrolled"]
  assert 0 < dots["dfa_grad"] < dots["bp_grad"], gpt2  # the dropped cotangents are gone
  assert not (out / "tests.json").exists()


def _run_suite(out: pathlib.Path, env: dict) -> None:
  full = _env() | env
  proc = subprocess.run(["bash", "benchmarks/gpu_suite.sh", str(out), "--quick"], cwd=REPO,
                        env=full, capture_output=True, text=True, timeout=1800)
  assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
