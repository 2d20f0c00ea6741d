#!/usr/bin/env bash
# Issue 9 evidence: optuna over ABQ's hyperparameters at W4A4 on SmolLM2 (conf/experiment/
# abq_optuna.yaml), the preset / RTN / float at the same budget, then the tables and figures.
# Resumable: killed anywhere, the same command redoes nothing that finished.
set -euo pipefail
cd "$(dirname "$0")/../.."
. .venv/bin/activate
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
abqlab +experiment=abq_optuna quant=fp calib=rtn
abqlab +experiment=abq_optuna calib=rtn
abqlab +experiment=abq_optuna
abqlab -m +experiment=abq_optuna
store=experiments/abq_optuna/runs.jsonl
abqlab-table "$store" --pick best --published LLaMA-2-7B --out experiments/abq_optuna/table
abqlab-figures "$store" --out experiments/abq_optuna/figures
