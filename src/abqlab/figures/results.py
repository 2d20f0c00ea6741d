"""Figures over many runs: perplexity vs bits per method, ablation bars, size–perplexity Pareto."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from abqlab.figures.common import method, new_figure, ok_records, quantized, setting
from abqlab.tables.layout import build_table, higher_is_better, metric_label


def log_scale_wanted(values: list[float]) -> bool:
    positive = [v for v in values if v > 0]
    return bool(positive) and max(positive) / min(positive) > 10


def ppl_vs_bits(records: list[dict[str, Any]], metric: str) -> Figure | None:
    """One line per method over the bit settings (high to low precision); float as a line."""
    table = build_table(ok_records(records), metrics=[metric])
    settings = [s for s in table.settings if s != "W16A16"]
    if not settings:
        return None
    figure = new_figure(max(6.4, 0.9 * len(settings) + 2), 4.2)
    axes = figure.add_subplot()
    values: list[float] = []
    for row in table.rows:
        points = [(i, table.cells[(row, s, metric)].agg) for i, s in enumerate(settings)
                  if (row, s, metric) in table.cells]
        if row == "FP" or not points:
            continue
        xs, aggs = [p[0] for p in points], [p[1] for p in points]
        means = [a.mean for a in aggs]
        values += means
        axes.errorbar(xs, means, yerr=[a.std for a in aggs], marker="o", capsize=3, label=row)
    fp = table.cells.get(("FP", "W16A16", metric))
    if fp is not None:
        axes.axhline(fp.agg.mean, color="black", linestyle="--", linewidth=1, label="FP")
        values.append(fp.agg.mean)
    if not values:
        return None
    axes.set_xticks(range(len(settings)), settings, rotation=30)
    axes.set_xlabel("bit setting (weights W, activations A; * = bit balance)")
    axes.set_ylabel(metric_label(metric) + (" accuracy" if higher_is_better(metric) else " ppl"))
    if log_scale_wanted(values):
        axes.set_yscale("log")
    axes.legend(fontsize="small")
    axes.set_title(f"{metric} per method and bit setting")
    return figure


def ablation_bars(records: list[dict[str, Any]], metric: str) -> Figure | None:
    """Grouped bars (settings × methods), error bars = std over seeds where repeated."""
    table = build_table(ok_records(records), metrics=[metric])
    settings = [s for s in table.settings if s != "W16A16"]
    rows = [r for r in table.rows if r != "FP"]
    if not settings or not rows:
        return None
    width = 0.8 / len(rows)
    figure = new_figure(max(6.4, 1.2 * len(settings) * max(1, len(rows) / 3)), 4.2)
    axes = figure.add_subplot()
    values = []
    for k, row in enumerate(rows):
        xs, means, errors = [], [], []
        for i, s in enumerate(settings):
            cell = table.cells.get((row, s, metric))
            if cell is not None:
                xs.append(i + (k - (len(rows) - 1) / 2) * width)
                means.append(cell.agg.mean)
                errors.append(cell.agg.std)
        values += means
        axes.bar(xs, means, width, yerr=errors, capsize=3, label=row)
    axes.set_xticks(range(len(settings)), settings)
    axes.set_ylabel(metric)
    if log_scale_wanted(values):
        axes.set_yscale("log")
    fp = table.cells.get(("FP", "W16A16", metric))
    if fp is not None:
        axes.axhline(fp.agg.mean, color="black", linestyle="--", linewidth=1, label="FP")
    seeds = sorted({c.agg.n for c in table.cells.values()})
    axes.set_title(f"{metric}: mean ± std over seeds (n = {', '.join(map(str, seeds))})")
    axes.legend(fontsize="small", ncols=2)
    return figure


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points no other point beats in both size and perplexity, by increasing size."""
    front, best = [], math.inf
    for size, value in sorted(points):
        if value < best:
            front.append((size, value))
            best = value
    return front


def size_pareto(records: list[dict[str, Any]], metric: str) -> Figure | None:
    """Model size (``size/*``) against perplexity, one colour per method, the Pareto front."""
    ok = ok_records(records)
    size_key = next((k for r in ok for k in r.get("metrics", {}) if k.startswith("size/")), None)
    if size_key is None:
        return None
    points = [(r["metrics"][size_key], r["metrics"][metric], method(r), setting(r))
              for r in ok if size_key in r["metrics"] and metric in r["metrics"]]
    if len(points) < 2:
        return None
    figure = new_figure(6.4, 4.4)
    axes = figure.add_subplot()
    for name in dict.fromkeys(p[2] for p in points):
        mine = [p for p in points if p[2] == name]
        axes.scatter([p[0] for p in mine], [p[1] for p in mine], label=name, s=24)
    front = pareto_front([(p[0], p[1]) for p in points])
    axes.step([p[0] for p in front], [p[1] for p in front], where="post", color="black",
              linewidth=1, label="Pareto front")
    for size, value, _, label in points:
        if (size, value) in front:
            axes.annotate(label, (size, value), fontsize=7, xytext=(3, 3),
                          textcoords="offset points")
    axes.set_xlabel(size_key + " (MiB)" if size_key.endswith("_mb") else size_key)
    axes.set_ylabel(metric)
    if log_scale_wanted([p[1] for p in points]):
        axes.set_yscale("log")
    axes.legend(fontsize="small")
    axes.set_title("size vs perplexity")
    return figure


def trials(records: list[dict[str, Any]], metric: str) -> Figure | None:
    """A sweep's objective per run in store order, with the best so far (optuna evidence)."""
    values = [r["metrics"][metric] for r in ok_records(records) if quantized(r)
              and metric in r.get("metrics", {})]
    if len(values) < 3:
        return None
    figure = new_figure(6.4, 3.8)
    axes = figure.add_subplot()
    axes.plot(range(1, len(values) + 1), values, "o", label="run")
    axes.plot(range(1, len(values) + 1), np.minimum.accumulate(values), "-", label="best so far")
    axes.set_xlabel("run (store order)")
    axes.set_ylabel(metric)
    if log_scale_wanted(values):
        axes.set_yscale("log")
    axes.legend(fontsize="small")
    return figure
