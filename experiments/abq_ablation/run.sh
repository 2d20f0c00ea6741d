#!/usr/bin/env bash
# ABQ-LLM ablations on SmolLM2-135M at W4A4 and W3A16: the full `abq` preset and one loss or
# component switched off per variant, each over 3 calibration-window seeds. Same budget as
# experiments/calib_table (8 windows × 256 tokens, 4 epochs, 40 × 512 eval windows).
# Runs land in experiments/abq_ablation/runs.jsonl; a finished config is skipped on a re-run.
set -euo pipefail
cd "$(dirname "$0")/../.."
common=(+experiment=calib_table calib=abq logger=none skip_done=true
        results_store=experiments/abq_ablation/runs.jsonl
        "hydra.sweep.dir=multirun/abq_ablation/\${now:%Y-%m-%d_%H-%M-%S}"
        quant=w4a4,w3a16 calib.seed=1,2,3)
abqlab -m "${common[@]}"
abqlab -m "${common[@]}" calib.name=abq-no-akl calib.losses.akl=0
abqlab -m "${common[@]}" calib.name=abq-no-dlc calib.losses.dlc=0
abqlab -m "${common[@]}" calib.name=abq-no-fpstar calib.losses.mse_fpstar=0
abqlab -m "${common[@]}" calib.name=abq-no-compensation calib.components.compensation.enabled=false
python -m abqlab.tables.seeds experiments/abq_ablation/runs.jsonl --baseline abq \
  > experiments/abq_ablation/table.md
