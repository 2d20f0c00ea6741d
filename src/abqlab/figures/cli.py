"""``abqlab-figures <store> --out DIR``: every figure the store's records allow, PNG and PDF.

perplexity vs bits per method, ablation bars (mean ± std over seeds), size–perplexity Pareto
(where ``size/*`` metrics exist), a sweep's runs in order, per-block calibration loss curves,
float vs quantized attention maps and per-channel maxima before/after calibration (from
``diagnostics``). ``--wandb offline|online`` also logs the PNGs as wandb images.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from tqdm.auto import tqdm

from abqlab.figures import results, runs
from abqlab.figures.common import (
    first_metric,
    log_to_wandb,
    main_setting,
    method,
    ok_records,
    save,
    setting,
)
from abqlab.tables.layout import one_model
from abqlab.tables.summary import latest_by_config


def slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in text.lower())


def best_curve_runs(records: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """Per (method, setting) with curves, the run with the best ``metric``."""
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for record in records:
        if not runs.curve_blocks(record):
            continue
        key = (method(record), setting(record))
        value = record.get("metrics", {}).get(metric, float("inf"))
        if key not in best or value < best[key].get("metrics", {}).get(metric, float("inf")):
            best[key] = record
    return list(best.values())


def plan(records: list[dict[str, Any]], metric: str, where: str | None,
         max_curves: int) -> dict[str, Callable[[], Figure | None]]:
    """Figure name → builder, for everything the records can show."""
    figures: dict[str, Callable[[], Figure | None]] = {
        "ppl_vs_bits": lambda: results.ppl_vs_bits(records, metric),
        "ablation_bars": lambda: results.ablation_bars(records, metric),
        "size_pareto": lambda: results.size_pareto(records, metric),
        "sweep_runs": lambda: results.trials(records, metric),
    }
    if where is not None:
        figures[f"attention_{slug(where)}"] = lambda: runs.attention_maps(records, where)
        figures[f"channels_{slug(where)}"] = lambda: runs.channel_maxima(records, where)
    for record in best_curve_runs(records, metric)[:max_curves]:
        name = f"curves_{slug(method(record))}_{slug(setting(record))}"
        figures[name] = lambda r=record: runs.calibration_curves(r)
    return figures


def build(stores: list[Path], out: Path, metric: str | None = None, where: str | None = None,
          max_curves: int = 6, only: list[str] | None = None,
          model: str | None = None) -> dict[str, list[Path]]:
    """Write the figures for one model (``model`` or the most frequent); name → [png, pdf]."""
    records = ok_records([r for store in stores for r in latest_by_config(store)])
    if not records:
        raise SystemExit(f"no ok records in {', '.join(map(str, stores))}")
    records, _ = one_model(records, model)
    metric = metric or first_metric(records) or "ppl/wiki"
    where = where or main_setting(records)
    written: dict[str, list[Path]] = {}
    todo = plan(records, metric, where, max_curves)
    if only:
        todo = {k: v for k, v in todo.items() if any(k.startswith(o) for o in only)}
    for name, builder in tqdm(todo.items(), desc="figures", unit="figure"):
        figure = builder()
        if figure is not None:
            written[name] = save(figure, out, name)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stores", type=Path, nargs="+", help="results store(s), JSONL")
    parser.add_argument("--out", type=Path, required=True, help="folder for PNG and PDF files")
    parser.add_argument("--metric", default=None, help="default: the first ppl/* metric")
    parser.add_argument("--model", default=None, help="model.name (default: the most frequent)")
    parser.add_argument("--setting", default=None,
                        help="bit setting for attention/channel figures, e.g. W4A4 "
                             "(default: the most frequent quantized one)")
    parser.add_argument("--max-curves", type=int, default=6,
                        help="calibration-curve figures: at most this many (method, setting)")
    parser.add_argument("--only", default=None, help="comma-separated figure name prefixes")
    parser.add_argument("--wandb", choices=("disabled", "offline", "online"), default="disabled",
                        help="also log the PNGs to wandb (offline: files under OUT/wandb)")
    args = parser.parse_args(argv)
    only = args.only.split(",") if args.only else None
    written = build(args.stores, args.out, args.metric, args.setting, args.max_curves, only,
                    args.model)
    for name, paths in written.items():
        print(f"{name}: {', '.join(str(p) for p in paths)}")
    if args.wandb != "disabled" and written:
        pngs = {name: paths[0] for name, paths in written.items()}
        print(f"wandb ({args.wandb}): {log_to_wandb(pngs, args.out, args.wandb)}")


if __name__ == "__main__":
    main()
