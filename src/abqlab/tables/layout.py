"""The paper layout as data: rows are methods, columns are bit settings × metrics (perplexity
per dataset, zero-shot average); each cell aggregates one config family over its seeds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from abqlab.tables.seeds import Aggregate, family_key, metric_of
from abqlab.tables.summary import label

FP_BITS = 16
ZERO_SHOT = ("acc/avg6", "acc_norm/avg6")
HIGHER_IS_BETTER = ("acc", "acc_norm")
METRIC_NAMES = {"acc/avg6": "0-shot avg6", "acc_norm/avg6": "0-shot avg6 (norm)"}


def setting_label(quant: dict[str, Any]) -> str:
    """``W4A4``, ``W2*A8`` (bit balance), ``W4A16g128``, ``W16A16`` for float; mixed precision:
    ``W3.5bA16g64`` (a budget's average bits) or ``WmixA16g64`` (given per-layer widths)."""
    budget = quant.get("budget") or {}
    widths = budget.get("avg_bits") or (f"{budget['bytes']}B" if budget.get("bytes") else None)
    weights = f"{widths}b" if widths and not isinstance(widths, str) else widths
    if weights is None and quant.get("layer_bits"):
        weights = "mix"
    text = f"W{weights or quant.get('w_bits', FP_BITS)}{'*' if quant.get('w_bit_balance') else ''}"
    text += f"A{quant.get('a_bits', FP_BITS)}"
    group = quant.get("w_group", -1)
    if quant.get("w_bits", FP_BITS) != FP_BITS and group > 0:
        text += f"g{group}"
    kv = {quant.get(k, FP_BITS) for k in ("k_bits", "v_bits")}
    if kv != {FP_BITS}:
        text += "KV" + "/".join(str(b) for b in sorted(kv))
    return text


def setting_order(quant: dict[str, Any]) -> tuple:
    """Float first, then weight-only, then by activation and weight bits (high to low)."""
    w, a = quant.get("w_bits", FP_BITS), quant.get("a_bits", FP_BITS)
    return (-(w == FP_BITS and a == FP_BITS), -a, -w, bool(quant.get("w_bit_balance")))


def is_float(quant: dict[str, Any]) -> bool:
    return all(quant.get(k, FP_BITS) == FP_BITS for k in ("w_bits", "a_bits", "k_bits", "v_bits"))


def metric_label(metric: str) -> str:
    if metric in METRIC_NAMES:
        return METRIC_NAMES[metric]
    kind, _, name = metric.partition("/")
    return name.capitalize() if kind == "ppl" else metric


def higher_is_better(metric: str) -> bool:
    return metric.split("/")[0] in HIGHER_IS_BETTER


@dataclass
class Cell:
    agg: Aggregate
    hidden: int = 0  # other config families with the same row and setting, not shown
    best: bool = False


@dataclass
class Table:
    rows: list[str]
    settings: list[str]
    metrics: list[str]
    cells: dict[tuple[str, str, str], Cell] = field(default_factory=dict)
    runs: int = 0
    pick: str = "latest"

    @property
    def columns(self) -> list[tuple[str, str]]:
        """(setting, metric) pairs that hold at least one value, in layout order."""
        return [
            (s, m)
            for s in self.settings
            for m in self.metrics
            if any((r, s, m) in self.cells for r in self.rows)
        ]

    def seeds(self) -> set[int]:
        return {cell.agg.n for cell in self.cells.values()}


def model_name(record: dict[str, Any]) -> str:
    return str(record.get("config", {}).get("model", {}).get("name", "?"))


def one_model(records: list[dict[str, Any]], model: str | None = None) -> tuple[list, str]:
    """Records of one model (never mix models in a table): ``model``, else the most frequent."""
    names = [model_name(r) for r in records]
    if model is None:
        model = max(dict.fromkeys(names), key=names.count) if names else "?"
    return [r for r, n in zip(records, names, strict=True) if n == model], model


def row_label(record: dict[str, Any], rows: str) -> str:
    quant = record.get("config", {}).get("quant", {})
    return "FP" if rows == "calib" and is_float(quant) else label(record, rows)


def default_metrics(records: list[dict[str, Any]]) -> list[str]:
    """Every ``ppl/*`` metric (first-seen order), then the zero-shot average where recorded."""
    seen: dict[str, None] = {}
    for record in records:
        for name in record.get("metrics", {}):
            if name.startswith("ppl/"):
                seen.setdefault(name)
    zero_shot = [m for m in ZERO_SHOT[:1] if any(m in r.get("metrics", {}) for r in records)]
    return [*seen, *zero_shot]


def build_table(
    records: list[dict[str, Any]],
    rows: str = "calib",
    metrics: list[str] | None = None,
    pick: str = "latest",
) -> Table:
    """Aggregate ok records into the layout. Where several config families (runs that differ in
    more than seeds) share a row and setting, ``pick`` chooses one for every column: ``latest``
    (the family of the last record) or ``best`` (best mean of the first metric, e.g. a sweep's
    objective); the cells count the others as hidden."""
    ok = [r for r in records if r.get("status") == "ok"]
    metrics = metrics or default_metrics(ok)
    quants = {setting_label(r["config"]["quant"]): r["config"]["quant"] for r in ok}
    settings = sorted(quants, key=lambda s: setting_order(quants[s]))
    row_names = list(dict.fromkeys(row_label(r, rows) for r in ok))
    row_names.sort(key=lambda name: name != "FP")
    table = Table(row_names, settings, metrics, runs=len(ok), pick=pick)
    position = {id(r): i for i, r in enumerate(ok)}
    families: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] = {}
    for record in ok:
        key = (row_label(record, rows), setting_label(record["config"]["quant"]))
        families.setdefault(key, {}).setdefault(family_key(record), []).append(record)
    for (row, setting), by_family in families.items():
        members = choose(list(by_family.values()), metrics[0], pick, position)
        for metric in metrics:
            values = [v for v in (metric_of(r, metric) for r in members) if v is not None]
            if values:
                hidden = len(by_family) - 1
                table.cells[(row, setting, metric)] = Cell(Aggregate(tuple(values)), hidden)
    mark_best(table)
    return table


def choose(families: list[list[dict[str, Any]]], metric: str, pick: str,
           position: dict[int, int]) -> list[dict[str, Any]]:
    """One family's records: the latest one's, or the best mean of ``metric``."""
    if pick != "best":
        return max(families, key=lambda f: max(position[id(r)] for r in f))
    sign = -1 if higher_is_better(metric) else 1

    def score(family: list[dict[str, Any]]) -> float:
        values = [v for v in (metric_of(r, metric) for r in family) if v is not None]
        return sign * sum(values) / len(values) if values else float("inf")

    return min(families, key=score)


def mark_best(table: Table) -> None:
    """Bold the best mean of each column (ties: all), where a column has two values or more."""
    for setting, metric in table.columns:
        cells = [c for r in table.rows if (c := table.cells.get((r, setting, metric)))]
        if len(cells) < 2:
            continue
        pick = max if higher_is_better(metric) else min
        best = pick(c.agg.mean for c in cells)
        for cell in cells:
            cell.best = cell.agg.mean == best
