"""Seed-aggregated tables: mean ± std over runs that differ only in their seeds, and whether each
row differs from a baseline row by more than noise.

``python -m abqlab.tables.seeds experiments/abq_ablation/runs.jsonl --baseline abq``

A difference of means counts as significant when it exceeds 2 std, the larger of the two rows'
sample standard deviations over seeds (a stricter bar than 2 standard errors of the difference);
anything smaller is marked "n.s.", and a row with a single seed makes no claim.
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from abqlab.tables.summary import label, latest_by_config
from abqlab.track.store import known_hashes

# Config keys that only choose a random seed: runs differing in these alone repeat one setting.
SEED_KEYS = (("seed",), ("calib", "seed"))


@dataclass(frozen=True)
class Aggregate:
    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float:
        return statistics.stdev(self.values) if self.n > 1 else 0.0

    def differs_from(self, other: Aggregate) -> bool:
        """|mean difference| > 2 × the larger seed std of the two (needs ≥ 2 seeds each)."""
        if self.n < 2 or other.n < 2:
            return False
        return abs(self.mean - other.mean) > 2 * max(self.std, other.std)


def family_key(record: dict[str, Any]) -> str:
    """The config hash with every seed key removed: equal for runs that differ only in seeds
    (the oldest of :func:`known_hashes`, so records from before fields were added group too)."""
    config = dict(record.get("config", {}))
    for path in SEED_KEYS:
        node = config
        for part in path[:-1]:
            node[part] = dict(node.get(part, {}))
            node = node[part]
        node.pop(path[-1], None)
    return known_hashes(config)[-1]


def metric_of(record: dict[str, Any], metric: str) -> float | None:
    if record.get("status") != "ok":
        return None
    value = record.get("metrics", {}).get(metric)
    return None if value is None else float(value)


def aggregate(
    records: list[dict[str, Any]], rows: str, cols: str, metric: str
) -> dict[tuple[str, str], Aggregate]:
    """Values of ``metric`` grouped by (row label, column label) over all ok records."""
    groups: dict[tuple[str, str], list[float]] = {}
    for record in records:
        value = metric_of(record, metric)
        if value is not None:
            groups.setdefault((label(record, rows), label(record, cols)), []).append(value)
    return {key: Aggregate(tuple(values)) for key, values in groups.items()}


def seed_of(record: dict[str, Any]) -> tuple[Any, ...]:
    """The record's values of :data:`SEED_KEYS` (equal for runs on the same windows)."""
    values = []
    for path in SEED_KEYS:
        node: Any = record.get("config", {})
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        values.append(node)
    return tuple(values)


def paired_deltas(
    records: list[dict[str, Any]], rows: str, cols: str, metric: str, baseline: str
) -> dict[tuple[str, str], list[float]]:
    """Per (row, column), ``metric`` minus the baseline row's on each seed both have."""
    by_seed: dict[tuple[str, str], dict[tuple[Any, ...], float]] = {}
    for record in records:
        value = metric_of(record, metric)
        if value is not None:
            key = (label(record, rows), label(record, cols))
            by_seed.setdefault(key, {})[seed_of(record)] = value
    deltas = {}
    for (row, col), values in by_seed.items():
        base = by_seed.get((baseline, col), {})
        shared = [seed for seed in values if seed in base]
        if row != baseline and shared:
            deltas[(row, col)] = [values[seed] - base[seed] for seed in shared]
    return deltas


def paired_text(deltas: list[float]) -> str:
    """'paired Δ +m ± s, k/n above': the mean and std of per-seed differences, and how many are
    above zero (same windows on both sides, so the windows' own noise cancels)."""
    above = sum(d > 0 for d in deltas)
    spread = statistics.stdev(deltas) if len(deltas) > 1 else 0.0
    return f"paired Δ {statistics.fmean(deltas):+.3g} ± {spread:.3g}, {above}/{len(deltas)} above"


def fmt(value: float) -> str:
    return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.3g}"


def seed_table(
    records: list[dict[str, Any]], rows: str, cols: str, metric: str, baseline: str | None
) -> str:
    """Markdown: mean ± std (n) per cell; with ``baseline``, Δ against it and significance."""
    groups = aggregate(records, rows, cols, metric)
    paired = paired_deltas(records, rows, cols, metric, baseline) if baseline else {}
    row_names = list(dict.fromkeys(r for r, _ in groups))
    col_names = list(dict.fromkeys(c for _, c in groups))
    lines = [
        f"| {rows} \\ {cols} | " + " | ".join(col_names) + " |",
        "|---" * (len(col_names) + 1) + "|",
    ]
    for row in row_names:
        cells = []
        for col in col_names:
            agg = groups.get((row, col))
            if agg is None:
                cells.append("")
                continue
            text = f"{fmt(agg.mean)} ± {fmt(agg.std)} (n={agg.n})"
            base = groups.get((baseline, col)) if baseline else None
            if base is not None and row != baseline:
                verdict = "significant" if agg.differs_from(base) else "n.s."
                text += f"; Δ {agg.mean - base.mean:+.3g} {verdict}"
                if (row, col) in paired:
                    text += f"; {paired_text(paired[(row, col)])}"
            cells.append(text)
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", type=Path)
    parser.add_argument("--rows", default="calib")
    parser.add_argument("--cols", default="quant")
    parser.add_argument("--metric", default="ppl/wiki")
    parser.add_argument("--baseline", default=None, help="row label to compare every row with")
    args = parser.parse_args(argv)
    records = latest_by_config(args.store)
    if not records:
        raise SystemExit(f"no records in {args.store}")
    print(f"{args.metric}: mean ± std over seeds ({len(records)} runs from {args.store})")
    if args.baseline:
        print(f"Δ against {args.baseline}; n.s. = |Δ| within 2 std "
              "(the larger of the two rows' std over seeds)\n")
    print(seed_table(records, args.rows, args.cols, args.metric, args.baseline))


if __name__ == "__main__":
    main()
