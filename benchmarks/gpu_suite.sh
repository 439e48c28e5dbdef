#!/usr/bin/env bash
# The test suite, then the GPU figures, in one go (every part has its own time limit).
#
#   bash benchmarks/gpu_suite.sh OUT_DIR            # on a lent GPU machine
#   bash benchmarks/gpu_suite.sh OUT_DIR --quick    # small sizes: checks that it all runs (CPU)
#
# Writes OUT_DIR/*.json (one file per part, see below), OUT_DIR/<part>.log and
# OUT_DIR/suite.json (versions, device, per-part exit codes and seconds). A part
# that fails or runs out of time is recorded as such (out of time: exit code 124);
# the others still run.
#   tests.json             pytest on tests/core, tests/models, tests/thirdparty: its summary
#                          line, failures and exit code (--quick: tests/core -m "not slow")
#   step_mlp.json          DFA vs backprop step time, 4x1024 tanh MLP (benchmarks/step_time.py)
#   step_gpt2_small.json   DFA (macro_out preset) vs backprop step time, GPT-2-small-size LM;
#                          the gradients also with the 12 blocks unrolled (scan_unroll), with
#                          the dot operations of each unrolled compiled gradient
#   layer_parallel.json    vmapped vs reverse-scan DFA backward (benchmarks/layer_parallel.py)
#   opu_projector.json     simulated-OPU vs digital projector time (benchmarks/opu_projector.py)
#   pipeline.json          pipelines on the devices present + 1.14B model (benchmarks/pipeline.py)
#   pipeline_*.png         the layer-parallel and pipeline figures (the bubble table's figures
#                          only where the table runs: not on a GPU, which skips it)
#
# Environment:
#   GPU_SUITE_SKIP_TESTS=1   skip the tests part (tests/benchmarks checks the rest this way).
#   GPU_SUITE_TESTS="..."    pytest's arguments for the tests part instead of the default ones
#                            (space-separated), e.g. GPU_SUITE_TESTS="tests/core/test_lifted.py".
#   GPU_SUITE_PARTS=a,b      run only these parts (the names above, without .json). To split
#                            the suite over two calls, run GPU_SUITE_PARTS=tests and then the
#                            others into the same OUT_DIR: suite.json keeps the exit codes an
#                            earlier call recorded there for parts this call does not rerun.
set -u
OUT=${1:?usage: gpu_suite.sh OUT_DIR [--quick]}
QUICK=${2:-}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$ROOT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
declare -A RC SECS
PARTS=${GPU_SUITE_PARTS:-tests,step_mlp,step_gpt2_small,layer_parallel,opu_projector,pipeline}
if [ "${GPU_SUITE_SKIP_TESTS:-0}" = "1" ]; then
  PARTS=$(echo ",$PARTS," | sed 's/,tests,/,/; s/^,//; s/,$//')
fi
wanted() { case ",$PARTS," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

run_part() {  # name limit_seconds command...  (--quick: limit x SCALE, for slow CPUs)
  local name=$1 limit=$(( $2 * SCALE )); shift 2
  wanted "$name" || return 0
  local start=$SECONDS
  echo "== $name (limit ${limit}s)"
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  RC[$name]=$?
  SECS[$name]=$((SECONDS - start))
  tail -n 4 "$OUT/$name.log"
}

SCALE=1
if [ "$QUICK" = "--quick" ]; then
  SCALE=6
  TESTS=(tests/core -m "not slow")
  MLP_ARGS="--quick"; LM="tiny"; LP="--quick"; PIPE="--quick"; OPU="--quick"
else
  TESTS=(tests/core tests/models tests/thirdparty)
  MLP_ARGS="--repeats 20"; LM="gpt2_small"; LP="--repeats 10"; PIPE="--skip table --repeats 10"
  OPU="--repeats 20"
fi
if [ -n "${GPU_SUITE_TESTS:-}" ]; then
  read -r -a TESTS <<< "$GPU_SUITE_TESTS"
fi

# The tests first: figures from a machine where the suite fails are not worth recording.
run_part tests 300 python -m pytest -q -rs -p no:xdist "${TESTS[@]}"
if wanted tests; then
  python - "$OUT" "${RC[tests]}" "${TESTS[@]}" <<'EOF'
import json, re, shlex, sys
out, rc, args = sys.argv[1], int(sys.argv[2]), shlex.join(sys.argv[3:])
lines = open(f"{out}/tests.log", errors="replace").read().splitlines()
summary = [l.strip("= ") for l in lines
           if re.search(r"\d+ (passed|failed|errors?|skipped|deselected)\b.* in [\d.]+s", l)]
json.dump({"command": f"python -m pytest -q -rs -p no:xdist {args}", "exit_code": rc,
           "summary": summary[-1] if summary else None,
           "failed": [l for l in lines if l.startswith(("FAILED ", "ERROR "))],
           "skipped": [l for l in lines if l.startswith("SKIPPED ")]},
          open(f"{out}/tests.json", "w"), indent=2)
print("tests:", summary[-1] if summary else f"no pytest summary line (exit code {rc})")
EOF
fi

run_part step_mlp 60 python benchmarks/step_time.py --model mlp $MLP_ARGS --json "$OUT/step_mlp.json"

run_part step_gpt2_small 300 python - "$LM" "$OUT/step_gpt2_small.json" <<'EOF'
import dataclasses, functools, json, statistics, sys
import jax
sys.path.insert(0, "benchmarks")
import step_time as st
from timing import interleaved_samples, median_ratio
from dfax.models import presets
from dfax.models.transformer import TransformerConfig, TransformerLM
size, out = sys.argv[1], sys.argv[2]
if size == "gpt2_small":   # 124M: 12 layers, d 768, 12 heads, vocab 50257, T 1024
  cfg = TransformerConfig(vocab_size=50257, d_model=768, num_heads=12, num_layers=12,
                          d_ff=3072, max_len=1024, norm="post", dtype=jax.numpy.bfloat16)
  batch, seq, repeats = 8, 1024, 8
else:
  cfg = TransformerConfig(vocab_size=96, d_model=64, num_heads=2, num_layers=2, d_ff=128,
                          max_len=32, norm="post")
  batch, seq, repeats = 2, 32, 3
model = TransformerLM(cfg)
tokens = jax.random.randint(jax.random.key(0), (batch, seq + 1), 0, cfg.vocab_size)
x, y = tokens[:, :-1], tokens[:, 1:]
params = jax.jit(model.init)(jax.random.key(2), x)
steps = st.make_steps(model, params, x, y, presets.macro_out())
steps = {k: steps[k] for k in ("forward", "bp", "dfa", "bp_grad", "dfa_grad")}
# Unrolled, XLA drops the input cotangents that macro_out's cuts discard (docs/depth.md).
unrolled = st.gradient_fns(
    TransformerLM(dataclasses.replace(cfg, scan_unroll=cfg.num_layers)), presets.macro_out())
unrolled = {k: unrolled[k] for k in ("bp_grad", "dfa_grad")}
steps |= {f"{k}_unrolled": functools.partial(fn, params, x, y) for k, fn in unrolled.items()}
samples = interleaved_samples(steps, repeats=repeats)
res = {"size": size, "batch": batch, "seq": seq, "device": jax.devices()[0].device_kind,
       "ms": {k: 1e3 * statistics.median(v) for k, v in samples.items()},
       "dfa_over_bp": median_ratio(samples, "dfa", "bp"),
       "dfa_over_bp_gradient_only": median_ratio(samples, "dfa_grad", "bp_grad"),
       "dfa_over_bp_gradient_only_unrolled":
           median_ratio(samples, "dfa_grad_unrolled", "bp_grad_unrolled"),
       "unrolled_over_rolled": {k: median_ratio(samples, f"{k}_unrolled", k) for k in unrolled},
       "dots_unrolled": {k: st.compiled_dots(fn, params, x, y) for k, fn in unrolled.items()}}
print(json.dumps(res, indent=1))
json.dump(res, open(out, "w"), indent=2)
EOF

run_part layer_parallel 90 python benchmarks/layer_parallel.py $LP --json "$OUT/layer_parallel.json" \
    --figures "$OUT"

run_part opu_projector 40 python benchmarks/opu_projector.py $OPU --json "$OUT/opu_projector.json"

run_part pipeline 100 python benchmarks/pipeline.py $PIPE --json "$OUT/pipeline.json" --figures "$OUT"

python - "$OUT" <<EOF
import json, os, sys, jax, flax
rc = {$(for k in "${!RC[@]}"; do printf '"%s": %s, ' "$k" "${RC[$k]}"; done)}
secs = {$(for k in "${!SECS[@]}"; do printf '"%s": %s, ' "$k" "${SECS[$k]}"; done)}
path = os.path.join(sys.argv[1], "suite.json")
if os.path.exists(path):  # parts an earlier call (GPU_SUITE_PARTS) recorded and this one did not
  old = json.load(open(path))
  rc, secs = old.get("exit_codes", {}) | rc, old.get("seconds", {}) | secs
json.dump({"jax": jax.__version__, "flax": flax.__version__, "backend": jax.default_backend(),
           "devices": [d.device_kind for d in jax.devices()], "quick": "$QUICK" == "--quick",
           "parts": "$PARTS".split(","), "exit_codes": rc, "seconds": secs},
          open(path, "w"), indent=2)
print(json.dumps({"exit_codes": rc, "seconds": secs}))
EOF
