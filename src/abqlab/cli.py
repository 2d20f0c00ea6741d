"""The ``abqlab`` command: ``abqlab model=smollm2-135m quant=w4a8 calib=rtn`` (Hydra overrides).

Returns the run's objective (``objective``, default the ppl of the first eval dataset; NaN for
a failed run) so that ``hydra/sweeper=optuna`` can minimise it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import to_absolute_path
from omegaconf import DictConfig

from abqlab.config import CONF_DIR, register_configs

register_configs()


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float:
    """Validate, then run; exits 2 on a bad config, 1 on a failed single run."""
    from abqlab.pipeline import objective_value, run
    from abqlab.track.environment import git_commit
    from abqlab.validate import ConfigError, check_run

    git_commit()  # pin the code version for every job of this process

    try:
        check_run(cfg)
    except (ConfigError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    record = run(cfg, run_dir, Path(to_absolute_path(cfg.results_store)))
    summary = ", ".join(
        f"{k}={v:.4g}" for k, v in record.get("metrics", {}).items() if not k.startswith("size/")
    )
    print(f"[{record['status']}] {cfg.quant.name} {cfg.calib.name}: {summary} → {run_dir}")
    if record["status"] == "failed" and HydraConfig.get().mode.name == "RUN":
        sys.exit(1)
    return objective_value(cfg, record)


if __name__ == "__main__":
    main()
