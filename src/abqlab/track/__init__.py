"""Recording runs: result.json, the results store, wandb."""
