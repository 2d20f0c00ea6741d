"""The ``abqlab`` command in subprocesses: bad configs fail early and cleanly; a smoke run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from abq_helpers import REPO

from abqlab.track.store import read_records

ABQLAB = [sys.executable, "-m", "abqlab.cli"]

# One of each kind (the rest are covered in-process in test_validate.py, without the imports):
# (id, overrides, exit code (None: any non-zero), text that must appear in stderr)
BAD = [
    ("w_bits=9", ["quant.w_bits=9"], 2, "quant.w_bits=9: allowed: 1, 2, 3, 4, 5, 6, 7, 8, 16"),
    ("model.path", ["model=hf"], 2, "model.path=None: allowed: "),
    ("type", ["quant.w_bits=abc"], None, "quant.w_bits"),
    ("quant option", ["quant=w9a9"], None, "Could not find 'quant/w9a9'"),
    ("load_from", ["calib=load"], 2, "calib.load_from=None: allowed: the path of a quantized.pt"),
    ("calib.data", ["calib.data=nope"], 2, "calib.data=nope: allowed: c4, text, wiki"),
    ("eval.datasets", ["eval.datasets=[wiki,text:/no/such.txt]"], 2,
     "eval.datasets (such)=['/no/such.txt']: allowed: path (one file)"),
]


@pytest.fixture(scope="module")
def bad_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    """Launch every bad-config command at once (each is mostly import time), then collect."""
    root = tmp_path_factory.mktemp("bad")
    procs = {}
    for name, overrides, _, _ in BAD:
        work = root / name.replace(" ", "_").replace("=", "_")
        work.mkdir()
        args = [*overrides, f"hydra.run.dir={work / 'run'}", f"results_store={work / 'r.jsonl'}"]
        procs[name] = (
            work,
            subprocess.Popen(
                [*ABQLAB, *args],
                cwd=work,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ),
        )
    results = {}
    for name, (work, proc) in procs.items():
        out, err = proc.communicate(timeout=120)
        results[name] = (proc.returncode, out, err, work)
    return results


@pytest.mark.parametrize(("name", "overrides", "code", "needle"), BAD, ids=[b[0] for b in BAD])
def test_bad_config_fails_early_without_traceback(
    bad_runs: dict[str, tuple], name: str, overrides: list[str], code: int | None, needle: str
) -> None:
    returncode, out, err, work = bad_runs[name]
    assert returncode != 0 if code is None else returncode == code, err
    assert needle in err
    assert "Traceback" not in err + out
    if code == 2:  # our own check: exactly one line
        assert err.strip().count("\n") == 0 and err.startswith("error: ")
    assert not (work / "r.jsonl").exists()  # nothing ran
    assert not (work / "run" / "result.json").exists()


def test_smoke_run_default_logger_keeps_wandb_in_the_run_dir(tmp_path: Path) -> None:
    """The default logger is wandb offline: its files go to <run_dir>/wandb, not ./wandb."""
    repo_wandb = REPO / "wandb"
    before = sorted(repo_wandb.rglob("*")) if repo_wandb.exists() else None
    run_dir, store = tmp_path / "run", tmp_path / "runs.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    proc = subprocess.run(
        [
            *ABQLAB,
            "model=smollm2-2layer",
            "eval.max_windows=2",
            "eval.seqlen=128",
            f"results_store={store}",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[ok]" in proc.stdout and "ppl/wiki=" in proc.stdout
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "ok"
    assert set(result) >= {"config", "config_hash", "metrics", "timings", "environment"}
    assert result["config"]["logger"]["mode"] == "offline"
    assert result["metrics"]["ppl/wiki"] > 1
    assert [r["config_hash"] for r in read_records(store)] == [result["config_hash"]]
    offline_runs = list((run_dir / "wandb").rglob("offline-run-*"))
    assert offline_runs, sorted(p.name for p in run_dir.rglob("*"))
    assert any(p.suffix == ".wandb" for p in offline_runs[0].rglob("*"))
    after = sorted(repo_wandb.rglob("*")) if repo_wandb.exists() else None
    assert after == before  # nothing new in the repo's ./wandb
    assert (run_dir / ".hydra" / "config.yaml").exists()
