#!/usr/bin/env bash
# The demo: SmolLM2-135M in float, then RTN W8A8 and W4A8, wiki perplexity, results recorded.
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
abqlab -m quant=fp,w8a8,w4a8 calib=rtn eval.max_windows=20 \
  results_store=results/demo.jsonl
python -m abqlab.tables.summary results/demo.jsonl
