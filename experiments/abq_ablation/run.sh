#!/usr/bin/env bash
# ABQ-LLM ablations on SmolLM2-135M at W4A4: switch off one component or loss at a time.
# Same budget as experiments/calib_table (8 windows × 256 tokens, 2 epochs, 20 eval windows).
# Each run is recorded in experiments/abq_ablation/runs.jsonl (skipped if already ok there).
set -euo pipefail
cd "$(dirname "$0")/../.."
common=(+experiment=calib_table quant=w4a4 calib=abq logger=none skip_done=true
        results_store=experiments/abq_ablation/runs.jsonl)
abqlab "${common[@]}" calib.name=abq-no-akl calib.losses.akl=0
abqlab "${common[@]}" calib.name=abq-no-dlc calib.losses.dlc=0
abqlab "${common[@]}" calib.name=abq-no-fpstar calib.losses.mse_fpstar=0
abqlab "${common[@]}" calib.name=abq-no-compensation calib.components.compensation.enabled=false
python -m abqlab.tables.summary experiments/abq_ablation/runs.jsonl > experiments/abq_ablation/table.md
