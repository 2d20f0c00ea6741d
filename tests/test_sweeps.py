"""Sweeps through the real ``abqlab -m``: a killed optuna sweep started again proposes the same
trials and redoes nothing that finished; the ready search space parses; joblib and submitit
(local) launchers record every run. The 2-layer model, tiny budgets."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from abq_helpers import REPO

from abqlab.track.store import read_records

ABQLAB = [sys.executable, "-m", "abqlab.cli", "-m"]
SMALL = ("model=smollm2-2layer", "eval.max_windows=1", "eval.seqlen=64", "logger=none",
         "diagnostics.enabled=false", "skip_done=true")


def abqlab(tmp: Path, *overrides: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [*ABQLAB, *SMALL, f"results_store={tmp / 'runs.jsonl'}",
         f"hydra.sweep.dir={tmp / 'sweep'}", *overrides],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout,
    )


def ok_hashes(store: Path) -> list[str]:
    return [r["config_hash"] for r in read_records(store) if r["status"] == "ok"]


@pytest.fixture(scope="module")
def optuna_installed() -> None:
    pytest.importorskip("optuna")
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")


def test_killed_optuna_sweep_started_again_redoes_nothing_that_finished(
    tmp_path: Path, optuna_installed: None
) -> None:
    """Killed after its first trial; the same command again proposes the same trials (fixed
    sampler seed), skips the finished ones and completes the rest."""
    store = tmp_path / "runs.jsonl"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [*ABQLAB, *SMALL, f"results_store={store}", f"hydra.sweep.dir={tmp_path / 's'}",
               "hydra/sweeper=abq_search", "hydra.sweeper.n_trials=3", "quant=w4a4",
               "calib=abq", "calib.nsamples=1", "calib.seqlen=16"]
    sweep = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not ok_hashes(store) and sweep.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    sweep.send_signal(signal.SIGKILL)
    sweep.wait(timeout=60)
    done = ok_hashes(store)
    assert 1 <= len(done) < 3, "the sweep must be killed midway"

    again = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    hashes = ok_hashes(store)
    assert len(hashes) == 3 and len(set(hashes)) == 3  # each trial once: none redone
    assert hashes[: len(done)] == done  # the same trials were proposed again, first to last
    assert again.stdout.count("[skipped]") == len(done)
    best = (tmp_path / "s" / "optimization_results.yaml").read_text()
    assert "best_value" in best and "calib.components.smoothing.alpha" in best


def test_abq_search_space_parses_into_optuna_distributions(optuna_installed: None) -> None:
    from abq_helpers import CONF_DIR
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra_plugins.hydra_optuna_sweeper._impl import create_optuna_distribution_from_override

    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(config_name="config", overrides=["+experiment=abq_optuna"],
                      return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper.direction == "minimize" and sweeper.sampler.seed == 0
    assert sweeper.max_failure_rate == 1.0 and sweeper.n_trials >= 20
    parser = OverridesParser.create()
    kinds = {}
    for key, value in sweeper.params.items():
        (override,) = parser.parse_overrides([f"{key}={value}"])
        if override.is_sweep_override():  # the rest are fixed, e.g. calib.name
            kinds[key] = type(create_optuna_distribution_from_override(override)).__name__
    assert kinds["calib.epochs"] == "CategoricalDistribution"
    assert kinds["calib.components.smoothing.lr"] == "LogUniformDistribution"
    assert kinds["calib.losses.akl"] == "UniformDistribution"
    assert {k.split(".")[1] for k in kinds} == {"epochs", "components", "losses"}
    assert sweeper.params["calib.name"] == "abq-tpe"
    assert cfg.quant.name == "w4a4" and cfg.calib.name == "abq" and cfg.skip_done


def test_joblib_launcher_runs_in_parallel_processes(tmp_path: Path) -> None:
    done = abqlab(tmp_path, "hydra/launcher=parallel", "quant=fp,w8a8", "calib=rtn")
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(set(ok_hashes(tmp_path / "runs.jsonl"))) == 2


def test_submitit_local_launcher(tmp_path: Path) -> None:
    done = abqlab(tmp_path, "hydra/launcher=submitit_local", "quant=w8a8", "calib=rtn",
                  "hydra.launcher.timeout_min=10")
    assert done.returncode == 0, done.stderr[-3000:]
    (record,) = read_records(tmp_path / "runs.jsonl")
    assert record["status"] == "ok" and record["metrics"]["ppl/wiki"] > 1
    assert list((tmp_path / "sweep" / ".submitit").rglob("*_result.pkl"))
