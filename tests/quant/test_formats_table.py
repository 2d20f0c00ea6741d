"""experiments/formats/table.py: rows are labelled by format pair, method and variant (M1, M2,
LoRC), two configurations on one row are reported rather than merged, failures that later ran
ok are hidden, and the claims are read from the store only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from abq_helpers import load_script


@pytest.fixture
def table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    module = load_script("experiments/formats/table.py", "formats_table")
    monkeypatch.setattr(module, "STORE", tmp_path / "runs.jsonl")
    return module


def record(ppl: float | None, digest: str, w_format: str = "int", a_format: str = "int",
           rule: str = "none", rank: int = 0, method: str = "rtn", name: str = "x") -> dict:
    quant = {"name": name, "w_format": w_format, "w_bits": 4, "w_group": 128, "w_sym": False,
             "w_scale_rule": rule, "a_format": a_format, "a_bits": 8, "a_group": -1,
             "a_sym": False, "k_bits": 16, "kv_format": "int", "kv_granularity": "token"}
    config = {"quant": quant, "calib": {"name": method, "lorc": {"rank": rank}},
              "eval": {"name": "ppl"}}
    return {"config": config, "config_hash": digest,
            "status": "ok" if ppl is not None else "failed", "reason": "boom",
            "metrics": {} if ppl is None else {"ppl/wiki": ppl}, "timings": {},
            "environment": {"git_commit": "abcdef0123"}}


def write(table: Any, records: list[dict]) -> None:
    table.STORE.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_variants_are_separate_rows(table: Any) -> None:
    write(table, [record(19.4, "a"), record(26.7, "b", rule="m1"), record(21.73, "c", rule="m2"),
                  record(18.6, "d", rank=8), record(20.0, "e", w_format="fp4_e2m1",
                                                        a_format="fp8_e4m3")])
    rows = table.latest_ok("ppl")
    pair = "W INT4 g128 / A INT8"
    assert {k[2] for k in rows if k[0] == pair} == {"plain", "M1", "M2", "LoRC8"}
    assert ("W FP4 g128 / A FP8", "RTN", "plain") in rows
    assert not table.CLASHES
    claims = "\n".join(table.claims_table(rows))
    assert f"M2 costs little: {pair} | plain | M2 | RTN | 19.40 | 21.73 | +12.0 %" in claims
    assert "W INT4 g128 / A INT8 | W FP4 g128 / A FP8 | RTN | 19.40 | 20.00 | +3.1 %" in claims
    assert "| GPTQ | — | — | not run |" in claims


def test_two_configurations_on_one_row_are_reported(table: Any) -> None:
    write(table, [record(19.4, "a", name="one"), record(19.0, "b", name="two")])
    rows = table.latest_ok("ppl")
    assert rows[("W INT4 g128 / A INT8", "RTN", "plain")]["config_hash"] == "b"
    assert len(table.CLASHES) == 1 and "`a` and `b`" in table.CLASHES[0]


def test_failures_that_later_ran_ok_are_hidden(table: Any) -> None:
    write(table, [record(None, "a"), record(19.4, "a"), record(None, "z", name="never")])
    failed = table.failed_runs()
    assert len(failed) == 1 and failed[0].startswith("never / rtn: boom")
