"""Published numbers (experiments/reference/published_ppl.csv) in the same layout as ours, kept
apart and labelled: they are other papers' LLaMA runs, never mixed into our rows."""

from __future__ import annotations

import csv
from pathlib import Path

from abqlab.tables.layout import Cell, Table
from abqlab.tables.seeds import Aggregate

REFERENCE = Path(__file__).resolve().parents[3] / "experiments" / "reference" / "published_ppl.csv"
COLUMNS = {"wikitext2_ppl": "ppl/wikitext2", "c4_ppl": "ppl/c4"}
FLOAT_SETTINGS = ("FP16", "BF16", "FP32")


def normalise_setting(setting: str) -> str:
    """The CSV's ``W4A4`` / ``W2*A16`` / ``FP16`` as our setting labels (float: ``W16A16``)."""
    return "W16A16" if setting.upper() in FLOAT_SETTINGS else setting


def published_models(path: Path = REFERENCE) -> list[str]:
    with open(path, encoding="utf-8") as handle:
        return list(dict.fromkeys(row["model"] for row in csv.DictReader(handle)))


def published_table(model: str, path: Path = REFERENCE, settings: list[str] | None = None) -> Table:
    """The published rows for ``model`` (row label: method, and the source where two disagree).

    ``settings``: keep only these columns (e.g. ours), in that order; None keeps all.
    """
    with open(path, encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if r["model"] == model]
    if not rows:
        known = ", ".join(published_models(path))
        raise SystemExit(f"no published rows for {model}; models: {known}")
    sources: dict[tuple[str, str], set[str]] = {}
    for row in rows:
        sources.setdefault((row["method"], row["setting"]), set()).add(row["source"])
    found = list(dict.fromkeys(normalise_setting(r["setting"]) for r in rows))
    wanted = [s for s in (settings or found) if s in found]
    table = Table([], wanted, list(COLUMNS.values()))
    for row in rows:
        setting = normalise_setting(row["setting"])
        if setting not in wanted:
            continue
        name = "FP16" if setting == "W16A16" else row["method"]
        if len(sources[(row["method"], row["setting"])]) > 1:
            name += f" ({row['source'].split(' ')[0]})"
        if name not in table.rows:
            table.rows.append(name)
        for column, metric in COLUMNS.items():
            if row[column].strip():
                table.cells[(name, setting, metric)] = Cell(Aggregate((float(row[column]),)))
    return table  # no bold: the best of other papers' rows is not a claim of ours
