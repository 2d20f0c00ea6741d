#!/usr/bin/env bash
# Every GPU check and benchmark of the abqlab kernels, in one command (run on a GPU machine):
#
#     bash csrc/gpu_all.sh            # full run
#     QUICK=1 bash csrc/gpu_all.sh    # quick bench grid (2 shapes, 4 batch sizes), 1 e2e layer
#
# Steps: build the extension against the local torch; GPU tests (exact vs reference);
# compute-sanitizer memcheck + racecheck on a trimmed test grid; kernel benchmark; decode
# latency. Everything lands in experiments/kernels/results/<UTC time>-<device>/ with logs and a
# summary; a failing step is recorded and the next one still runs.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-python}"

DEV=$($PY -c "import torch; print(torch.cuda.get_device_name(0).replace(' ', '_'))" 2>/dev/null)
if [ -z "$DEV" ]; then
  echo "no CUDA device visible to torch" >&2
  exit 2
fi
RES="experiments/kernels/results/$(date -u +%Y%m%dT%H%M%SZ)-$DEV"
mkdir -p "$RES"
SUMMARY="$RES/summary.txt"
: > "$SUMMARY"

step() {  # step NAME CMD...: run, tee the log, record the status
  local name=$1
  shift
  echo "=== $name: $*" | tee -a "$SUMMARY"
  local t0=$SECONDS
  "$@" > "$RES/$name.log" 2>&1
  local rc=$?
  tail -n 30 "$RES/$name.log"
  echo "--- $name rc=$rc ($((SECONDS - t0)) s)" | tee -a "$SUMMARY"
  return $rc
}

# pytest without the repo conftest (it needs hydra etc., absent on the GPU machine)
PYTEST=("$PY" -m pytest -p no:cacheprovider --noconftest -m gpu tests/kernels/test_kernels_gpu.py)

$PY - > "$RES/env.txt" 2>&1 <<'EOF'
import sys, torch, subprocess
print("python", sys.version)
print("torch", torch.__version__, "cuda", torch.version.cuda)
print("device", torch.cuda.get_device_name(0), torch.cuda.get_device_capability(0))
print(subprocess.run(["nvcc", "--version"], capture_output=True, text=True).stdout)
EOF

step build "$PY" csrc/build.py ext || { echo "build failed: see $RES/build.log"; exit 1; }
step gpu_tests "${PYTEST[@]}" -q -rs
if command -v compute-sanitizer > /dev/null; then
  export ABQLAB_GPU_QUICK=1
  step sanitizer_memcheck compute-sanitizer --tool memcheck --error-exitcode 99 \
    "${PYTEST[@]}" -q -x
  step sanitizer_racecheck compute-sanitizer --tool racecheck --error-exitcode 99 \
    "${PYTEST[@]}" -q -x -k "btc_exact or s8_exact"
  unset ABQLAB_GPU_QUICK
else
  echo "compute-sanitizer not found: skipped" | tee -a "$SUMMARY"
fi
if [ "${QUICK:-0}" = "1" ]; then
  step bench "$PY" experiments/kernels/bench.py --out "$RES" --quick
  step e2e "$PY" experiments/kernels/e2e_decode.py --out "$RES" --layers 2 --new 16
else
  step bench "$PY" experiments/kernels/bench.py --out "$RES"
  step e2e "$PY" experiments/kernels/e2e_decode.py --out "$RES"
fi
echo "results in $RES"
cat "$SUMMARY"
