#!/usr/bin/env bash
# One command that proves fastpass on a GPU machine with no network:
#   bash bench/gpu_check.sh OUTDIR
# builds the extension, runs `pytest -m gpu`, runs every bench in GPU mode, and writes logs and
# a summary to OUTDIR. Wheels for missing pure-Python test deps may be carried in .whl/.
# GPU_CHECK_FULL=1 runs e2e at full SPEC sizes (slower); passk/sampler/attention/regex always do.
# GPU_CHECK_TESTS / GPU_CHECK_BENCHES narrow the run (default: all tests, all benches);
# GPU_CHECK_FIGURE=1 also draws bench/plot_throughput.py's figure into OUTDIR.
# On the device tool, pass the commit: FASTPASS_COMMIT=<sha> bash bench/gpu_check.sh "$OUT".
set -u
OUT="${1:?usage: bash bench/gpu_check.sh OUTDIR}"
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
status() { echo "$1" | tee -a "$SUMMARY"; }

{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader;
  $PY -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)";
  $PY -c "import transformers; print('transformers', transformers.__version__)"; } 2>&1 | tee -a "$SUMMARY"

# Carried wheels (pure Python) for test deps the image lacks; install only what is missing.
if ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/fp_site .whl/*.whl \
    > "$OUT/wheels.log" 2>&1 && export PYTHONPATH="/tmp/fp_site${PYTHONPATH:+:$PYTHONPATH}"
fi

t0=$(date +%s)
if timeout 300 $PY -m pip install --no-build-isolation --no-deps -e . > "$OUT/build.log" 2>&1; then
  status "build: ok ($(( $(date +%s) - t0 )) s)"
else
  status "build: FAILED (see build.log)"; tail -30 "$OUT/build.log"; exit 1
fi
$PY -c "import fastpass._C as C; print('built_with_cuda', C.built_with_cuda, 'devices', C.cuda_device_count())" 2>&1 | tee -a "$SUMMARY"

timeout 300 $PY -m pytest -m gpu -q --no-header -p no:cacheprovider ${GPU_CHECK_TESTS:-tests} > "$OUT/pytest_gpu.log" 2>&1
rc=$?
status "pytest -m gpu: rc=$rc :: $(tail -1 "$OUT/pytest_gpu.log")"
[ $rc -ne 0 ] && grep -E "^(FAILED|ERROR)" "$OUT/pytest_gpu.log" | head -20 | tee -a "$SUMMARY"

E2E_FLAG="--quick"; [ "${GPU_CHECK_FULL:-0}" = 1 ] && E2E_FLAG=""
# never-measured first (P1 e2e, P4 regex on GPU), so a run cut short by the device's time limit
# still brings those back; every bench writes its log to OUTDIR as it finishes
for b in ${GPU_CHECK_BENCHES:-e2e regex sampler attention passk}; do
  [ -f "bench/bench_$b.py" ] || { status "bench $b: not present"; continue; }
  flag=""; [ "$b" = e2e ] && flag="$E2E_FLAG"
  t0=$(date +%s)
  timeout 240 $PY -m bench.bench_$b --device cuda $flag > "$OUT/bench_$b.log" 2>&1
  rc=$?
  status "bench $b: rc=$rc ($(( $(date +%s) - t0 )) s)"
  grep -E "^\|" "$OUT/bench_$b.log" | tee -a "$SUMMARY" >/dev/null
done
if [ "${GPU_CHECK_FIGURE:-0}" = 1 ]; then  # tokens/s vs K and prompt length, fastpass vs HF (minutes)
  timeout 300 $PY -m bench.plot_throughput --device cuda --out "$OUT/throughput.png" > "$OUT/figure.log" 2>&1
  status "figure: rc=$? (throughput.png, throughput.json)"
fi
cp bench/results.csv "$OUT/results.csv" 2>/dev/null
echo "---- summary ----"; cat "$SUMMARY"
