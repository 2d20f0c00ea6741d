"""Markdown tables over a results store: one row per config (its latest record).

``python -m abqlab.tables.summary results/runs.jsonl [--rows quant --cols calib --metric ppl/wiki]``
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from abqlab.track.store import read_records


def latest_by_config(store: Path) -> list[dict[str, Any]]:
    """The last record of each config hash, in first-seen order."""
    latest: dict[str, dict[str, Any]] = {}
    for record in read_records(store):
        latest[record.get("config_hash", "")] = record
    return list(latest.values())


def label(record: dict[str, Any], group: str) -> str:
    """A record's name in one config group (``quant``, ``calib``, ``model``...)."""
    node = record.get("config", {}).get(group, {})
    return str(node.get("name", node.get("method", "?")))


def cell(record: dict[str, Any] | None, metric: str) -> str:
    if record is None:
        return ""
    if record.get("status") != "ok":
        return "failed"
    value = record.get("metrics", {}).get(metric)
    if value is None:
        value = record.get("calibration", {}).get(metric)
    return "" if value is None else f"{value:.4g}"


def pivot(records: list[dict[str, Any]], rows: str, cols: str, metric: str) -> str:
    """A Markdown table with ``rows`` × ``cols`` groups and ``metric`` in the cells."""
    row_names = list(dict.fromkeys(label(r, rows) for r in records))
    col_names = list(dict.fromkeys(label(r, cols) for r in records))
    table = {(label(r, rows), label(r, cols)): r for r in records}
    lines = [f"| {rows} \\ {cols} | " + " | ".join(col_names) + " |",
             "|---" * (len(col_names) + 1) + "|"]
    for row in row_names:
        cells = [cell(table.get((row, col)), metric) for col in col_names]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("store", type=Path)
    parser.add_argument("--rows", default="quant")
    parser.add_argument("--cols", default="calib")
    parser.add_argument("--metric", default="ppl/wiki")
    args = parser.parse_args(argv)
    records = latest_by_config(args.store)
    if not records:
        raise SystemExit(f"no records in {args.store}")
    print(f"{args.metric} ({len(records)} runs from {args.store})\n")
    print(pivot(records, args.rows, args.cols, args.metric))


if __name__ == "__main__":
    main()
