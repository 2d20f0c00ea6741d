"""The learned allocator on its own objective: hard KL on the allocation windows per step.

Runs only the allocation stage of a Pareto row (pareto.py's ``allocated``: GPTQ candidates,
8 × 256 windows) with the learned allocator under each given relaxation and learning rate, and
appends one line per run (settings, the curve, the best hard KL vs the knapsack start and the
uniform allocation) to learned_allocation.jsonl. The perplexity of an allocation is pareto.py's.

    python experiments/mixed_precision/learned_allocation.py --budget 3.27 rms:0.1 linear:0.5
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from pareto import allocated  # noqa: E402

from abqlab.alloc.run import allocate_bits  # noqa: E402
from abqlab.config import CalibConfig, ModelConfig, QuantConfig, register_configs  # noqa: E402
from abqlab.data.presets import resolve_data  # noqa: E402
from abqlab.models.load import load_model  # noqa: E402
from abqlab.pipeline import typed  # noqa: E402
from abqlab.track.environment import environment  # noqa: E402

STORE = Path(os.environ.get("LEARNED_STORE", HERE / "learned_allocation.jsonl"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budget", default="3.27", help="a key of pareto.BUDGETS")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("settings", nargs="+", help="relaxation:lr, e.g. rms:0.1")
    args = parser.parse_args()
    torch.set_num_threads(1)
    register_configs()
    for setting in args.settings:
        relaxation, lr = setting.split(":")
        overrides = [o for o in allocated(args.budget, "learned") if not o.startswith("hydra")]
        overrides += [f"quant.budget.steps={args.steps}", f"quant.budget.lr={lr}",
                      f"quant.budget.relaxation={relaxation}", "model=smollm2-135m"]
        with initialize_config_dir(version_base="1.3", config_dir=str(HERE.parents[1] / "conf")):
            cfg = compose(config_name="config", overrides=overrides)
        quant = typed(cfg.quant, QuantConfig)
        loaded = load_model(typed(cfg.model, ModelConfig), cfg.seed)
        start = time.perf_counter()
        data = resolve_data(typed(cfg.calib, CalibConfig).data)
        with tempfile.TemporaryDirectory() as run_dir:
            _, summary = allocate_bits(loaded, quant, data, Path(run_dir))
        summary.pop("file", None)
        line = {"budget": args.budget, "relaxation": relaxation, "lr": float(lr),
                "steps": args.steps, "seconds": time.perf_counter() - start,
                "environment": environment(loaded.device), **summary}
        with STORE.open("a") as handle:
            handle.write(json.dumps(line) + "\n")
        curve = summary["curve"]
        print(f"{setting}: best hard KL {summary['gptq_kl']:.4f}, start {curve[0]['kl']:.4f}, "
              f"uniform {curve[0]['uniform_kl']:.4f}", flush=True)


if __name__ == "__main__":
    main()
