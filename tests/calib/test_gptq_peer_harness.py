"""Smoke test of the llm-compressor peer harness (slow; needs the optional extra ``.[peers]``).

Runs experiments/peers/peer.py on the 2-layer SmolLM2 with a tiny budget: the peer's RTN must
match abqlab's RTN on the same model and evaluation, and its GPTQ must record an ok run.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llmcompressor") is None,
                       reason="needs the peers extra: pip install -e .[peers]"),
]
HARNESS = Path(__file__).resolve().parents[2] / "experiments" / "peers"
SMALL = ("model=smollm2-2layer", "model.device=cpu", "quant=w3a16", "quant.w_group=64",
         "calib.nsamples=4", "calib.seqlen=64", "eval.max_windows=4", "eval.seqlen=128")


def records(store: Path) -> list[dict]:
    return [json.loads(line) for line in store.read_text().splitlines()]


def test_peer_harness_rtn_matches_abqlab_and_gptq_runs(tmp_path: Path) -> None:
    sys.path.insert(0, str(HARNESS))
    try:
        import peer
    finally:
        sys.path.remove(str(HARNESS))
    from abq_helpers import compose_run

    from abqlab.pipeline import run

    store = tmp_path / "runs.jsonl"
    for method in ("rtn", "gptq"):
        assert peer.main(["--method", method, *SMALL, f"results_store={store}"]) == 0
    cfg = compose_run(("logger=none", "calib=rtn", *SMALL, f"results_store={store}"))
    (tmp_path / "ours").mkdir()
    ours = run(cfg, tmp_path / "ours", store)
    peer_rtn, peer_gptq = records(store)[:2]
    assert peer_rtn["status"] == peer_gptq["status"] == ours["status"] == "ok"
    assert peer_gptq["config"]["peer"]["actorder"] == "static"
    assert peer_rtn["calibration"]["windows_shape"] == [4, 64]
    a, b = ours["metrics"]["ppl/wiki"], peer_rtn["metrics"]["ppl/wiki"]
    assert abs(a - b) <= 0.01 * a, (a, b)


def test_peer_refuses_group_128_on_576_columns(tmp_path: Path) -> None:
    sys.path.insert(0, str(HARNESS))
    try:
        import peer
    finally:
        sys.path.remove(str(HARNESS))
    store = tmp_path / "runs.jsonl"
    small = [s for s in SMALL if not s.startswith("quant.w_group")]
    code = peer.main(["--method", "gptq", *small, "quant.w_group=128", "quant.w_partial_group=true",
                      f"results_store={store}"])
    (record,) = records(store)
    assert code == 0 and record["status"] == "refused", record.get("reason")
