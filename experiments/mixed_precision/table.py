"""The size-ppl table of the mixed-precision runs in a results store (markdown on stdout)."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def rows(store: Path) -> list[dict]:
    """One row per ok record: quant, calib, size, the allocation's KL figures, ppl."""
    out = []
    for line in store.read_text().splitlines():
        record = json.loads(line)
        if record.get("status") != "ok":
            continue
        quant, metrics = record["config"]["quant"], record["metrics"]
        alloc = record.get("allocation") or {}
        out.append({
            "quant": quant["name"],
            "calib": record["config"]["calib"]["name"],
            "allocator": alloc.get("allocator", "uniform"),
            "bytes": metrics["size/bytes"],
            "avg_bits": metrics["size/avg_bits"],
            "candidates": alloc.get("weights", "rtn") if alloc else None,
            "calib KL": alloc.get(f"{alloc.get('weights', 'rtn')}_kl"),
            "uniform KL": alloc.get(f"uniform_{alloc.get('weights', 'rtn')}_kl"),
            "histogram": alloc.get("histogram", {str(quant["w_bits"]): "all"}),
            "ppl/wiki": metrics.get("ppl/wiki"),
        })
    return out


def fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return " ".join(f"W{k}:{v}" for k, v in value.items())
    return str(value)


def main() -> None:
    store = sys.argv[1] if len(sys.argv) > 1 else "experiments/mixed_precision/runs.jsonl"
    table = rows(Path(store))
    if not table:
        print("no ok records")
        return
    keys = list(table[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in table:
        print("| " + " | ".join(fmt(row[k]) for k in keys) + " |")


if __name__ == "__main__":
    main()
