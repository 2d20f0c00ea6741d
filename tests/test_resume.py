"""A calibration that dies mid-model continues from its finished blocks: in process (an exception
at block 2) it ends bitwise equal to an uninterrupted one; a real ``abqlab`` killed with SIGKILL
after its first block and started again with the same overrides resumes and records ok."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from abq_helpers import REPO

from abqlab.calib import blockwise
from abqlab.calib.blockwise import calibrate_blockwise
from abqlab.config import CalibConfig, ModelConfig, QuantConfig
from abqlab.data.presets import resolve_data
from abqlab.models.load import LoadedModel, load_model
from abqlab.pipeline import typed
from abqlab.track.store import read_records

TINY = ("quant=w4a4", "calib=abq", "calib.nsamples=2", "calib.seqlen=32", "calib.epochs=2")


@pytest.fixture(scope="module")
def three_blocks() -> LoadedModel:
    return load_model(ModelConfig(name="smollm2-3layer", num_hidden_layers=3, device="cpu"))


def calibrate(loaded: LoadedModel, composer: Callable[..., Any], run_dir: Path,
              *overrides: str) -> tuple[LoadedModel, dict[str, Any]]:
    cfg = composer("model=smollm2-2layer", *TINY, *overrides)
    copy_ = dataclasses.replace(loaded, model=copy.deepcopy(loaded.model))
    calib = typed(cfg.calib, CalibConfig)
    summary = calibrate_blockwise(
        copy_, typed(cfg.quant, QuantConfig), calib, resolve_data(calib.data), run_dir
    )
    return copy_, summary


def test_resumed_calibration_equals_the_uninterrupted_one(
    three_blocks: LoadedModel, composer: Callable[..., Any], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # restored at the end; equality is within one thread count
    reference, ref_summary = calibrate(three_blocks, composer, tmp_path / "ref")
    train = blockwise.BlockTrainer.train

    def dies_at_block_two(self: Any, ctx: Any, *args: Any) -> dict[str, Any]:
        if ctx.index == 2:
            raise RuntimeError("killed")
        return train(self, ctx, *args)

    with monkeypatch.context() as patch:
        patch.setattr(blockwise.BlockTrainer, "train", dies_at_block_two)
        with pytest.raises(RuntimeError, match="killed"):
            calibrate(three_blocks, composer, tmp_path / "run")
    saved = sorted(p.name for p in (tmp_path / "run" / "calib" / "resume").iterdir())
    assert saved == ["block_000.pt", "block_001.pt"]

    resumed, summary = calibrate(three_blocks, composer, tmp_path / "run")
    assert [b.get("resumed", False) for b in summary["blocks"]] == [True, True, False]
    for kept, again in zip(ref_summary["blocks"], summary["blocks"], strict=True):
        assert kept["loss"] == again["loss"]
    reference_state, resumed_state = reference.model.state_dict(), resumed.model.state_dict()
    assert reference_state.keys() == resumed_state.keys()
    for name, tensor in reference_state.items():
        assert torch.equal(tensor, resumed_state[name]), name
    ids = torch.arange(40).unsqueeze(0)
    with torch.no_grad():
        assert torch.equal(reference.model(ids).logits, resumed.model(ids).logits)

    # another config never restores these blocks (the fingerprint differs)
    _, other = calibrate(three_blocks, composer, tmp_path / "run", "calib.epochs=1")
    assert not any(b.get("resumed") for b in other["blocks"])
    torch.set_num_threads(threads)


ABQLAB = [sys.executable, "-m", "abqlab.cli"]
KILLABLE = (
    "model=smollm2-2layer", "model.name=smollm2-4layer", "model.num_hidden_layers=4",
    "quant=w4a4", "calib=abq", "calib.nsamples=2", "calib.seqlen=64", "calib.epochs=2",
    "eval.max_windows=2", "eval.seqlen=128", "logger=none", "diagnostics.enabled=false",
)


def launch(store: Path, run_dir: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [*ABQLAB, *KILLABLE, f"results_store={store}", f"hydra.run.dir={run_dir}"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def test_killed_run_resumes_from_its_blocks_when_started_again(tmp_path: Path) -> None:
    store = tmp_path / "runs.jsonl"
    victim = launch(store, tmp_path / "first")
    first_block = tmp_path / "first" / "calib" / "resume" / "block_000.pt"
    deadline = time.monotonic() + 240
    while not first_block.exists() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=60)
    assert first_block.exists(), "the run ended before its first block was saved"
    finished = len(list(first_block.parent.glob("block_*.pt")))
    assert finished < 4, "every block finished before the kill: nothing left to resume"
    assert not store.exists()  # it died without a record
    marker = store.with_name("runs.jsonl.inflight")
    assert len(list(marker.glob("*.json"))) == 1

    again = launch(store, tmp_path / "second")
    out, _ = again.communicate(timeout=600)
    assert again.returncode == 0, out[-3000:]
    assert "resume: blocks 0-" in out
    (record,) = read_records(store)
    assert record["status"] == "ok"
    resumed = [b.get("resumed", False) for b in record["calibration"]["blocks"]]
    assert resumed == [True] * resumed.count(True) + [False] * resumed.count(False)
    assert 1 <= resumed.count(True) <= finished and resumed.count(False) >= 1
    assert not marker.exists()  # recorded: nothing in flight
    assert not (tmp_path / "second" / "calib" / "resume").exists()  # dropped once ok
    assert sorted(p.name for p in (tmp_path / "second" / "calib").iterdir()) == [
        f"block_{i:03d}.pt" for i in range(4)
    ]
    assert json.loads((tmp_path / "second" / "result.json").read_text())["status"] == "ok"
    # that the restored blocks equal uninterrupted ones is shown in process, above
