#!/usr/bin/env bash
# Mixed precision on the full SmolLM2-135M at 3.5 bits per weight (the size of uniform W3 g64),
# round-to-nearest: uniform W3 g64 vs the knapsack allocation of Fisher sensitivities vs the
# learned allocation, each over widths {2, 3, 4, 8} with groups of 64. A short CPU demonstration
# (20 eval windows of 512, one thread); records go to runs.jsonl here.
set -euo pipefail
cd "$(dirname "$0")/../.."
ABQLAB=${ABQLAB:-$(command -v abqlab || echo .venv/bin/abqlab)}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
STORE=experiments/mixed_precision/runs.jsonl
COMMON=(model=smollm2-135m calib=rtn logger=none eval.max_windows=20
        results_store=$STORE skip_done=true)
"$ABQLAB" "${COMMON[@]}" quant=w3a16 quant.w_group=64 quant.name=w3a16g64
"$ABQLAB" "${COMMON[@]}" quant=mixed quant.budget.avg_bits=3.5
"$ABQLAB" "${COMMON[@]}" quant=mixed-learned quant.budget.avg_bits=3.5 quant.budget.steps=${STEPS:-8}
"$(dirname "$ABQLAB")/python" experiments/mixed_precision/table.py "$STORE" > experiments/mixed_precision/table.md
# second pass: Fisher from 4x the calibration tokens (16 x 256); learned with 12 steps at lr 0.3
"$ABQLAB" "${COMMON[@]}" quant=mixed quant.budget.avg_bits=3.5 quant.budget.nsamples=16 \
  quant.budget.seqlen=256
"$ABQLAB" "${COMMON[@]}" quant=mixed-learned quant.budget.avg_bits=3.5 quant.budget.steps=12 \
  quant.budget.lr=0.3
"$(dirname "$ABQLAB")/python" experiments/mixed_precision/table.py "$STORE" > experiments/mixed_precision/table.md
