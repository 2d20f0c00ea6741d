#!/usr/bin/env bash
# Run each line of a plan file (Hydra overrides) as one abqlab run, one after the other, into a
# results store. Blank lines and lines starting with # are skipped; runs already recorded ok in
# the store are skipped (skip_done), so an interrupted plan resumes where it stopped.
#   bash experiments/rotations/run.sh                       # plan.txt -> runs.jsonl
#   bash experiments/rotations/run.sh PLAN STORE            # any plan, any store
# then: python experiments/rotations/table.py
set -uo pipefail
cd "$(dirname "$0")/../.."
. .venv/bin/activate
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
plan=${1:-experiments/rotations/plan.txt}
store=${2:-experiments/rotations/runs.jsonl}
logdir=experiments/rotations/logs  # not committed (.gitignore)
mkdir -p "$logdir"
grep -v '^\s*#' "$plan" | grep -v '^\s*$' | while read -r line; do
  tag=$(echo "$line" | tr ' /=[],+*' '________' | cut -c1-150)
  echo "$(date +%T) start: $line"
  # shellcheck disable=SC2086
  abqlab $line logger=none skip_done=true results_store="$store" \
    hydra.run.dir="outputs/rotations/$(date +%Y%m%d_%H%M%S)_${tag:0:80}" \
    > "$logdir/${tag}.log" 2>&1
  rc=$?
  echo "$(date +%T) done (rc $rc): $(tail -c 300 "$logdir/${tag}.log" | tr '\r' '\n' | tail -1)"
done
