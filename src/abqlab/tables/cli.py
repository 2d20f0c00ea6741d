"""``abqlab-table``: a results store as the paper's table, in markdown and LaTeX (booktabs).

Rows are methods (``calib.name``; float runs are ``FP``), columns bit settings × metrics
(perplexity per evaluated dataset, the zero-shot average where recorded), best per column in
bold, mean ± std where seeds repeat. ``--published MODEL`` adds the published numbers for that
model from experiments/reference as a separate, labelled table.

``abqlab-table experiments/calib_table/runs.jsonl --out experiments/calib_table/table``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from abqlab.tables.layout import Table, build_table, model_name, one_model
from abqlab.tables.published import REFERENCE, published_table
from abqlab.tables.render import latex, markdown
from abqlab.tables.summary import latest_by_config


def load(stores: list[Path], model: str | None = None) -> tuple[list[dict], str]:
    """The stores' latest record per config, of one model (``model`` or the most frequent)."""
    records = [r for store in stores for r in latest_by_config(store)]
    if not records:
        raise SystemExit(f"no records in {', '.join(map(str, stores))}")
    chosen, model = one_model(records, model)
    others = sorted({model_name(r) for r in records} - {model})
    if others:
        print(f"note: showing model {model}; also in the store: {', '.join(others)} (--model)",
              file=sys.stderr)
    return chosen, model


def render(ours: Table, stores: list[Path], published: Table | None, model: str | None,
           fmt: str, our_model: str = "") -> str:
    names = ", ".join(str(s) for s in stores)
    title = f"Ours: {our_model}, {ours.runs} runs from {names}"
    draw = markdown if fmt == "md" else latex
    text = draw(ours, title)
    if published is not None:
        label = (f"Published, not ours: {model}, WikiText2 / C4 perplexity at seqlen 2048, "
                 "as printed by the sources in experiments/reference/published_ppl.csv")
        text += "\n" + draw(published, label, published=True)
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stores", type=Path, nargs="+", help="results store(s), JSONL")
    parser.add_argument("--rows", default="calib", help="config group naming the rows")
    parser.add_argument("--model", default=None,
                        help="model.name to show (default: the most frequent in the stores)")
    parser.add_argument("--metrics", default=None,
                        help="comma-separated metrics (default: every ppl/*, then acc/avg6)")
    parser.add_argument("--pick", choices=("latest", "best"), default="latest",
                        help="which config fills a cell when several share method and setting")
    parser.add_argument("--published", metavar="MODEL", default=None,
                        help="add published numbers for MODEL (e.g. LLaMA-2-7B)")
    parser.add_argument("--reference", type=Path, default=REFERENCE)
    parser.add_argument("--all-settings", action="store_true",
                        help="published table: every setting, not only those in our table")
    parser.add_argument("--format", choices=("md", "tex"), default="md", help="stdout format")
    parser.add_argument("--out", type=Path, default=None,
                        help="also write OUT.md and OUT.tex")
    args = parser.parse_args(argv)
    metrics = args.metrics.split(",") if args.metrics else None
    records, model = load(args.stores, args.model)
    ours = build_table(records, args.rows, metrics, args.pick)
    published = None
    if args.published:
        settings = None if args.all_settings else ours.settings
        published = published_table(args.published, args.reference, settings)
    print(render(ours, args.stores, published, args.published, args.format, model), end="")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        for fmt in ("md", "tex"):
            path = args.out.with_name(args.out.name + f".{fmt}")
            path.write_text(render(ours, args.stores, published, args.published, fmt, model))


if __name__ == "__main__":
    main()
