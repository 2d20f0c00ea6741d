"""experiments/mixed_precision/pareto_table.py: float-format rows get their own table."""

from __future__ import annotations

import json
from pathlib import Path

from abq_helpers import load_script


def record(fmt: str, name: str, ppl: float, histogram: dict | None = None) -> dict:
    config = {"quant": {"name": name, "w_format": fmt}, "calib": {"name": "rtn"}}
    metrics = {"size/bytes": 1234567, "size/avg_bits": 5.25, "ppl/wiki": ppl}
    extra = {"allocation": {"histogram": histogram}} if histogram else {}
    return {"status": "ok", "config": config, "metrics": metrics, **extra}


def test_float_format_rows(tmp_path: Path) -> None:
    pareto = load_script("experiments/mixed_precision/pareto_table.py", "pareto_table")
    store = tmp_path / "runs.jsonl"
    lines = [record("int", "w3a16g128", 24.7), record("mxfp4", "mixed-mx", 18.5, {"4": 3, "6": 2}),
             {**record("mxfp4", "failed", 1.0), "status": "failed"}]
    store.write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    rows = pareto.format_rows([store, tmp_path / "missing.jsonl"])
    assert len(rows) == 3  # header, rule, the one ok float-format record
    assert "mixed-mx" in rows[2] and "W4:3 W6:2" in rows[2] and "18.50" in rows[2]
    assert "1,234,567" in rows[2] and "5.250" in rows[2]
    assert pareto.format_rows([tmp_path / "missing.jsonl"]) == []
