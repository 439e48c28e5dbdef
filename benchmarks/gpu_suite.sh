#!/usr/bin/env bash
# GPU figures in one go (fits in 8 minutes; every part has its own time limit).
#
#   bash benchmarks/gpu_suite.sh OUT_DIR            # on a lent GPU machine
#   bash benchmarks/gpu_suite.sh OUT_DIR --quick    # small sizes: checks that it all runs (CPU)
#
# Writes OUT_DIR/*.json (one file per part, see below) and OUT_DIR/suite.json
# (versions, device, per-part exit codes and seconds). A part that fails or
# runs out of time is recorded as such; the others still run.
#   step_mlp.json          DFA vs backprop step time, 4x1024 tanh MLP (benchmarks/step_time.py)
#   step_gpt2_small.json   DFA (macro_out preset) vs backprop step time, GPT-2-small-size LM
#   layer_parallel.json    vmapped vs reverse-scan DFA backward (benchmarks/layer_parallel.py)
#   opu_projector.json     simulated-OPU vs digital projector time (stdout of opu_projector.py)
#   pipeline.json          pipelines on the devices present + 1.14B model (benchmarks/pipeline.py)
set -u
OUT=${1:?usage: gpu_suite.sh OUT_DIR [--quick]}
QUICK=${2:-}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
mkdir -p "$OUT"
cd "$ROOT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
declare -A RC SECS

run_part() {  # name limit_seconds command...  (--quick: limit x SCALE, for slow CPUs)
  local name=$1 limit=$(( $2 * SCALE )); shift 2
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
  MLP_ARGS="--batch 64 --repeats 3"; LM="tiny"; LP="--quick"; PIPE="--quick"; OPU="--batch 16 --repeats 3"
else
  MLP_ARGS="--repeats 20"; LM="gpt2_small"; LP="--repeats 10"; PIPE="--skip table --repeats 10"
  OPU="--repeats 20"
fi

run_part step_mlp 60 python benchmarks/step_time.py --model mlp $MLP_ARGS --json "$OUT/step_mlp.json"

run_part step_gpt2_small 170 python - "$LM" "$OUT/step_gpt2_small.json" <<'EOF'
import json, statistics, sys
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
steps = st.make_steps(model, params, x, y, presets.macro_out(model))
steps = {k: steps[k] for k in ("forward", "bp", "dfa", "bp_grad", "dfa_grad")}
samples = interleaved_samples(steps, repeats=repeats)
res = {"size": size, "batch": batch, "seq": seq, "device": jax.devices()[0].device_kind,
       "ms": {k: 1e3 * statistics.median(v) for k, v in samples.items()},
       "dfa_over_bp": median_ratio(samples, "dfa", "bp"),
       "dfa_over_bp_gradient_only": median_ratio(samples, "dfa_grad", "bp_grad")}
print(json.dumps(res, indent=1))
json.dump(res, open(out, "w"), indent=2)
EOF

run_part layer_parallel 90 python benchmarks/layer_parallel.py $LP --json "$OUT/layer_parallel.json"

run_part opu_projector 40 python benchmarks/opu_projector.py $OPU
python - "$OUT" <<'EOF'
import json, sys
out = sys.argv[1]
json.dump({"stdout": open(f"{out}/opu_projector.log").read().splitlines()},
          open(f"{out}/opu_projector.json", "w"), indent=2)
EOF

run_part pipeline 100 python benchmarks/pipeline.py $PIPE --json "$OUT/pipeline.json"

python - "$OUT" <<EOF
import json, sys, jax, flax
rc = {$(for k in "${!RC[@]}"; do printf '"%s": %s, ' "$k" "${RC[$k]}"; done)}
secs = {$(for k in "${!SECS[@]}"; do printf '"%s": %s, ' "$k" "${SECS[$k]}"; done)}
json.dump({"jax": jax.__version__, "flax": flax.__version__, "backend": jax.default_backend(),
           "devices": [d.device_kind for d in jax.devices()], "quick": "$QUICK" == "--quick",
           "exit_codes": rc, "seconds": secs}, open(sys.argv[1] + "/suite.json", "w"), indent=2)
print(json.dumps({"exit_codes": rc, "seconds": secs}))
EOF
