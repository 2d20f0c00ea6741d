#!/usr/bin/env bash
# The demo: SmolLM2-135M in float, then RTN and the ABQ-LLM calibrator at W4A4 (budget for 2 CPU
# cores: conf/experiment/demo.yaml), the paper-layout table and one figure (per-channel maxima of
# q_proj's input before/after calibration). Runs are recorded in results/demo.jsonl and skipped
# when already there: delete that file to start from scratch.
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
abqlab +experiment=demo quant=fp calib=rtn
abqlab -m +experiment=demo quant=w4a4 calib=rtn,abq
abqlab-table results/demo.jsonl --out results/demo_table
abqlab-figures results/demo.jsonl --out results/demo_figures --only channels
