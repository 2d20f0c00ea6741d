#!/usr/bin/env bash
# Every GPU check and benchmark of the abqlab kernels, in one command (on a GPU machine):
#
#     OUT=/path/to/dir bash csrc/gpu_all.sh --preset goals   # fits a 10-minute window
#     bash csrc/gpu_all.sh --preset full --sanitizer         # everything (tens of minutes)
#
# Needs torch (CUDA), transformers (decode step) and pytest; $PYTHON picks the interpreter.
# Steps: build the extension against the local torch (all cores); GPU tests (exact vs the
# reference; the quick grid under --preset goals); optional compute-sanitizer memcheck +
# racecheck; kernel benchmark (experiments/kernels/bench.py --preset P); decode latency, one
# decode step as one CUDA graph (experiments/kernels/e2e_decode.py --preset P). A failing step
# is recorded and the next one still runs.
#
# Everything lands in $OUT (default experiments/kernels/results/<UTC time>-<device>), as at
# most 8 files: summary.md (steps, status, seconds, then the two tables), env.txt, logs.txt
# (every step's output), tests.txt (pytest's own report), bench.csv, bench.md, decode.csv,
# decode.md.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-$(command -v python || command -v python3)}"
PRESET=goals
SANITIZER=0
while [ $# -gt 0 ]; do
  case "$1" in
    --preset) PRESET=$2; shift 2 ;;
    --sanitizer) SANITIZER=1; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
case "$PRESET" in goals|full|quick) ;; *) echo "preset: goals | full | quick" >&2; exit 2 ;; esac

DEV=$($PY -c "import torch; print(torch.cuda.get_device_name(0).replace(' ', '_'))" 2>/dev/null)
if [ -z "$DEV" ]; then
  echo "no CUDA device visible to torch" >&2
  exit 2
fi
OUT="${OUT:-experiments/kernels/results/$(date -u +%Y%m%dT%H%M%SZ)-$DEV}"
mkdir -p "$OUT"
SUMMARY="$OUT/summary.md"
LOGS="$OUT/logs.txt"
printf '# abqlab GPU run (preset %s)\n\n| step | rc | seconds |\n|---|---|---|\n' "$PRESET" \
  > "$SUMMARY"
: > "$LOGS"
T0=$SECONDS

step() {  # step NAME CMD...: run, append the log, record the status
  local name=$1
  shift
  echo "=== $name: $*" | tee -a "$LOGS"
  local t=$SECONDS
  "$@" >> "$LOGS" 2>&1
  local rc=$?
  echo "--- $name rc=$rc ($((SECONDS - t)) s)" | tee -a "$LOGS"
  echo "| $name | $rc | $((SECONDS - t)) |" >> "$SUMMARY"
  return $rc
}

$PY - > "$OUT/env.txt" 2>&1 <<'EOF'
import os, subprocess, sys, torch
print("python", sys.version)
print("torch", torch.__version__, "cuda", torch.version.cuda)
print("device", torch.cuda.get_device_name(0), torch.cuda.get_device_capability(0))
print("cpus", os.cpu_count())
print(subprocess.run(["nvcc", "--version"], capture_output=True, text=True).stdout)
EOF

# pytest without the repo conftest (it needs hydra etc., absent on the GPU machine)
PYTEST=("$PY" -m pytest -p no:cacheprovider --noconftest -m gpu tests/kernels/test_kernels_gpu.py
        tests/kernels/test_kernels_gpu_clip.py)

step build "$PY" csrc/build.py ext || { echo "build failed: see $LOGS"; exit 1; }
if [ "$PRESET" = "full" ]; then
  step gpu_tests "${PYTEST[@]}" -q -rs
else
  ABQLAB_GPU_QUICK=1 step gpu_tests "${PYTEST[@]}" -q -rs
fi
grep -E "passed|failed|error" "$LOGS" | tail -n 3 > "$OUT/tests.txt"
if [ "$SANITIZER" = "1" ] && command -v compute-sanitizer > /dev/null; then
  export ABQLAB_GPU_QUICK=1
  step sanitizer_memcheck compute-sanitizer --tool memcheck --error-exitcode 99 \
    "${PYTEST[@]}" -q -x
  step sanitizer_racecheck compute-sanitizer --tool racecheck --error-exitcode 99 \
    "${PYTEST[@]}" -q -x -k "btc_exact or s8_exact or fused"
  unset ABQLAB_GPU_QUICK
fi
step bench "$PY" experiments/kernels/bench.py --out "$OUT" --preset "$PRESET"
step decode "$PY" experiments/kernels/e2e_decode.py --out "$OUT" --preset \
  "$([ "$PRESET" = "quick" ] && echo quick || echo goals)"
{
  echo
  echo "total: $((SECONDS - T0)) s"
  for f in tests.txt bench.md decode.md; do
    [ -f "$OUT/$f" ] && { echo; cat "$OUT/$f"; }
  done
} >> "$SUMMARY"
echo "results in $OUT"
head -n 20 "$SUMMARY"
