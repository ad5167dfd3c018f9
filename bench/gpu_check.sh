#!/usr/bin/env bash
# Proves fastpass on a GPU machine with no network, in stages that each fit one device command:
#
#   bash bench/gpu_check.sh OUT 1     build for this GPU only; engine GPU tests; e2e P1a, P1b, P1c
#   bash bench/gpu_check.sh OUT 2     the rest of `pytest -m gpu`; benches regex (P4), sampler,
#                                     attention, passk (reuses stage 1's build on the same machine)
#   bash bench/gpu_check.sh OUT       both stages, one after the other (your own GPU)
#   GPU_CHECK_PLAN=1 bash bench/gpu_check.sh OUT [STAGE]   plan only: no GPU needed, nothing built
#
# Each stage has a budget of GPU_CHECK_STAGE_S (480) seconds: every step runs under its own limit,
# cut to what is left of the budget, stopped with SIGINT (pytest then prints its summary; a bench
# keeps every row it already wrote) and SIGKILL 20 s later. OUT receives at most 5 files: summary.txt,
# stage1.log, stage2.log, results.csv (every bench appends each row as its case finishes) and
# logs.tar.gz (each step's full log). Pass the commit where .git does not travel:
# FASTPASS_COMMIT=<sha> bash bench/gpu_check.sh "$OUT" 1. Pure-Python wheels for missing test
# dependencies may be carried in .whl/.
set -u
OUT="${1:?usage: bash bench/gpu_check.sh OUT [1|2|all]}"
STAGE="${2:-all}"
case "$STAGE" in 1|2|all) ;; *) echo "gpu_check: STAGE must be 1, 2 or all, got '$STAGE'" >&2; exit 2 ;; esac
mkdir -p "$OUT" && OUT="$(cd "$OUT" && pwd)"   # absolute before the cd below
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO="$(pwd)"
export PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
PY="${PYTHON:-python3}"
PLAN="${GPU_CHECK_PLAN:-0}"
STAGE_BUDGET="${GPU_CHECK_STAGE_S:-480}"
SUMMARY="$OUT/summary.txt"
RESULTS="$OUT/results.csv"
BUNDLE="$OUT/logs.tar.gz"
LOGS="$REPO/build/gpu_check_logs"   # git-ignored; stays on the machine between stages
mkdir -p "$LOGS"
touch "$SUMMARY"

UNIGNORE='import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execvp(sys.argv[1], sys.argv[1:])'

say() { echo "$*" | tee -a "$SUMMARY" >> "$STAGE_LOG"; echo "$*"; }

# step NAME LIMIT_S CMD...: runs CMD with its output in the stage log and in $LOGS/NAME.log;
# the limit is cut to the stage's remaining budget; a step that no longer fits is skipped.
step() {
  local name="$1" limit="$2"; shift 2
  local left=$(( STAGE_BUDGET - ($(date +%s) - STAGE_T0) - 15 ))   # 15 s for the bundle and kill grace
  [ "$PLAN" = 1 ] && left=$(( STAGE_BUDGET - PLANNED ))
  if [ "$limit" -gt "$left" ]; then limit=$left; fi
  if [ "$limit" -lt "${GPU_CHECK_MIN_STEP_S:-20}" ]; then say "stage $CUR step $name: SKIPPED (stage budget spent)"; return 0; fi
  PLANNED=$(( PLANNED + limit ))
  if [ "$PLAN" = 1 ]; then
    say "plan: stage $CUR step $name limit ${limit}s: $*"
    return 0
  fi
  local t0; t0=$(date +%s)
  echo "==== stage $CUR step $name (limit ${limit}s): $*" >> "$STAGE_LOG"
  # $UNIGNORE: a shell started in the background ignores SIGINT and its children inherit that;
  # reset it so the step's python turns SIGINT into KeyboardInterrupt (pytest's summary, bench rows).
  # (GNU coreutils' timeout was seen to reset it as well; other timeouts may not.)
  FASTPASS_BENCH_DEADLINE=$(( t0 + limit - 10 )) timeout -s INT -k 20 "$limit" $PY -c "$UNIGNORE" "$@" 2>&1 \
    | tee "$LOGS/$name.log" >> "$STAGE_LOG"
  local rc=${PIPESTATUS[0]}
  local dt=$(( $(date +%s) - t0 ))
  SPENT=$(( SPENT + dt ))
  local what="rc=$rc"; [ "$rc" = 124 ] && what="TIMED OUT (SIGINT at ${limit}s)"
  say "stage $CUR step $name: $what (${dt}s of ${limit}s)"
  LAST_RC=$rc
  return 0
}

pytest_step() {  # pytest_step NAME LIMIT ARGS...: pytest's closing line and failures go to the summary
  local name="$1" limit="$2"; shift 2
  local flags=(-q --no-header -p no:cacheprovider -m gpu --durations=20 -rfE)
  if [ "$PLAN" = 1 ] || $PY -c "import pytest_timeout" 2>/dev/null; then
    flags+=(--timeout=120)
  else
    say "note: pytest-timeout not installed: no per-test limit (the step limit still applies)"
  fi
  step "$name" "$limit" $PY -m pytest "${flags[@]}" "$@"
  [ "$PLAN" = 1 ] && return 0
  tail -1 "$LOGS/$name.log" | tee -a "$SUMMARY"
  grep -E "^(FAILED|ERROR) " "$LOGS/$name.log" | head -30 | tee -a "$SUMMARY"
}

bench_step() {  # bench_step AREA LIMIT [ARGS...]: the table rows go to the summary as well
  local area="$1" limit="$2"; shift 2
  step "bench_$area" "$limit" $PY -m bench.bench_$area --device cuda --csv "$RESULTS" "$@"
  [ "$PLAN" = 1 ] && return 0
  grep -E "^\| " "$LOGS/bench_$area.log" | grep -v "^| bench |" >> "$SUMMARY"
}

cuda_archs() {  # this GPU's compute capability as a CMake target: 9.0 -> 90a (Hopper-specific code)
  local cap
  cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' ')
  [ -n "$cap" ] || cap=$($PY -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())" 2>/dev/null)
  [ -n "$cap" ] || { echo "80;90a"; return; }
  local major=${cap%%.*} minor=${cap#*.}
  if [ "$major" -ge 9 ]; then echo "${major}${minor}a"; else echo "${major}${minor}"; fi
}

env_stamp() {
  date -u
  nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version --format=csv,noheader 2>&1 | head -2
  $PY -c "import torch, triton, transformers, numpy; print('torch', torch.__version__, 'triton', triton.__version__, 'transformers', transformers.__version__, 'numpy', numpy.__version__)" 2>&1 | tail -1
  echo "commit ${FASTPASS_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}"
}

install_wheels() {  # carried pure-Python wheels (test deps the image lacks)
  if ls .whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/fp_site .whl/*.whl \
      > "$LOGS/wheels.log" 2>&1 && export PYTHONPATH="/tmp/fp_site${PYTHONPATH:+:$PYTHONPATH}"
  fi
}

build_step() {
  local archs; archs=$(cuda_archs)
  [ "$PLAN" = 1 ] && archs="<this GPU's compute capability, e.g. 90a>"
  step build 140 env FASTPASS_CUDA=1 FASTPASS_CUDA_ARCHS="$archs" \
    $PY -m pip install --no-build-isolation --no-deps -e .
  [ "$PLAN" = 1 ] && return 0
  if [ "$LAST_RC" != 0 ]; then tail -30 "$LOGS/build.log" | tee -a "$SUMMARY"; return 1; fi
  $PY -c "import fastpass._C as C; print('built_with_cuda', C.built_with_cuda, 'devices', C.cuda_device_count())" 2>&1 | tee -a "$SUMMARY"
}

have_cuda_build() {
  $PY -c "import fastpass._C as C, sys; sys.exit(0 if C.built_with_cuda and C.cuda_device_count() > 0 else 1)" 2>/dev/null
}

begin_stage() {
  CUR=$1; SPENT=0; PLANNED=0; LAST_RC=0; STAGE_T0=$(date +%s)
  STAGE_LOG="$OUT/stage$1.log"; : > "$STAGE_LOG"
  say "==== gpu_check stage $1 (budget ${STAGE_BUDGET}s)$([ "$PLAN" = 1 ] && echo ', plan only')"
  [ "$PLAN" = 1 ] || env_stamp 2>&1 | tee -a "$SUMMARY" >> "$STAGE_LOG"
}

end_stage() {
  if [ "$PLAN" = 1 ]; then say "plan: stage $CUR total of step limits ${PLANNED}s (budget ${STAGE_BUDGET}s)"
  else say "stage $CUR done in $(( $(date +%s) - STAGE_T0 ))s, ${SPENT}s in steps (budget ${STAGE_BUDGET}s)"; fi
  (cd "$LOGS" && tar czf "$BUNDLE" --exclude='*.tar.gz' . 2>/dev/null)
}

stage1() {
  begin_stage 1
  install_wheels
  build_step || { end_stage; return 1; }
  # correctness of the engine on this GPU first (short), then the never-measured end-to-end numbers
  pytest_step pytest_engine 110 tests/test_engine_gpu.py
  bench_step e2e 215 --cases P1a,P1b,P1c
  end_stage
}

stage2() {
  begin_stage 2
  install_wheels
  if [ "$PLAN" = 1 ]; then
    say "plan: stage 2 reuses stage 1's build (fastpass/_C with CUDA, kept on the machine)"
  elif ! have_cuda_build; then
    say "stage 2: no CUDA build of fastpass._C here (a fresh machine?): building first"
    build_step || { end_stage; return 1; }
  fi
  pytest_step pytest_rest 170 tests --ignore tests/test_engine_gpu.py
  bench_step regex 50
  bench_step sampler 80
  bench_step attention 100
  bench_step passk 30
  end_stage
}

# GPU_CHECK_SOURCE_ONLY=1: define the functions and stop (tests drive `step` directly on CPU)
if [ "${GPU_CHECK_SOURCE_ONLY:-0}" = 1 ]; then return 0 2>/dev/null || exit 0; fi

[ -f "$RESULTS" ] || echo -n > "$RESULTS"
rc=0
case "$STAGE" in
  1) stage1 || rc=1 ;;
  2) stage2 || rc=1 ;;
  all) stage1 || rc=1; stage2 || rc=1 ;;
esac
[ -s "$RESULTS" ] || rm -f "$RESULTS"
echo "---- summary ($OUT: $(ls "$OUT" | tr '\n' ' ')) ----"
cat "$SUMMARY"
exit $rc
