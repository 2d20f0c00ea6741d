"""pareto.md and pareto.png: wiki ppl against model bytes, uniform vs allocated (issue 14).

Reads this folder's store (pareto.py's runs) and experiments/peers/runs.jsonl (its uniform
abqlab rows on the same protocol), keeps the protocol's records only (SmolLM2-135M fp32,
40 × 512 wiki windows; GPTQ on 64 × 512 windows with the MSE grid; weights only) and groups them
by ``size/bytes``: an allocated row sits on the line of the uniform row whose bytes it was given.

    python experiments/mixed_precision/pareto_table.py [STORE ...]
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
STORES = [HERE / "runs.jsonl", REPO / "experiments/peers/runs.jsonl"]
COLUMNS = ["uniform RTN", "uniform GPTQ", "knapsack", "search", "learned"]


def on_protocol(record: dict[str, Any]) -> bool:
    config = record["config"]
    model, ev, quant, calib = (config["model"], config["eval"], config["quant"],
                               config["calib"])
    gptq = (calib.get("components") or {}).get("gptq") or {}
    return (record.get("status") == "ok" and model["name"] == "smollm2-135m"
            and model.get("num_hidden_layers") is None and model.get("dtype") == "float32"
            and ev.get("max_windows") == 40 and ev.get("seqlen") == 512
            and quant["a_bits"] == 16 and quant.get("w_format", "int") == "int"
            and not quant["w_sym"] and not (calib.get("lorc") or {}).get("rank")
            and calib["name"] in ("rtn", "gptq")
            and (calib["name"] == "rtn" or (gptq.get("grid") == "mse"
                                            and (calib["nsamples"], calib["seqlen"]) == (64, 512))))


def column(record: dict[str, Any]) -> str:
    alloc = record.get("allocation")
    if alloc:
        return alloc["allocator"]
    return f"uniform {record['config']['calib']['name'].upper()}"


def uniform_label(quant: dict[str, Any]) -> str:
    group = quant["w_group"]
    return f"W{quant['w_bits']} " + ("per channel" if group == -1 else f"g{group}")


def size_of(record: dict[str, Any]) -> tuple[int, float]:
    """``size/bytes`` and ``size/avg_bits``; for uniform records older than size accounting,
    computed from their config with abqlab's accounting (alloc/size.py)."""
    metrics = record["metrics"]
    if "size/bytes" in metrics:
        return int(metrics["size/bytes"]), float(metrics["size/avg_bits"])
    from abqlab.alloc.problem import linear_shapes, other_bits_estimate
    from abqlab.alloc.size import weight_bits
    from abqlab.config import ModelConfig, QuantConfig
    from abqlab.models.load import load_config
    from abqlab.quant.apply import weight_spec

    q = record["config"]["quant"]
    model = load_config(ModelConfig(name=record["config"]["model"]["name"]))
    shapes = linear_shapes(model)
    spec = weight_spec(QuantConfig(w_bits=q["w_bits"], w_group=q["w_group"],
                                   w_partial_group=q.get("w_partial_group", False)))
    bits = sum(weight_bits(r, c, spec) for r, c in shapes.values())
    weights = sum(r * c for r, c in shapes.values())
    return -(-(bits + other_bits_estimate(model, shapes)) // 8), bits / weights


def collect(stores: list[Path]) -> dict[int, dict[str, Any]]:
    """bytes → {"label", "avg_bits", column → [records]}."""
    rows: dict[int, dict[str, Any]] = defaultdict(lambda: defaultdict(list))
    for store in stores:
        if not store.exists():
            continue
        for line in store.read_text().splitlines():
            record = json.loads(line)
            if not on_protocol(record) or (record.get("allocation")
                                           and "size/bytes" not in record["metrics"]):
                continue
            size, avg_bits = size_of(record)
            if record.get("allocation"):  # on its budget's line (it may use a few bytes less)
                size = int(record["allocation"]["budget_bytes"])
            row = rows[size]
            row[column(record)].append(record)
            if not record.get("allocation"):
                row["label"] = uniform_label(record["config"]["quant"])
                row["avg_bits"] = avg_bits
    return rows


def cell(records: list[dict[str, Any]]) -> str:
    values = [r["metrics"]["ppl/wiki"] for r in records]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.fmean(values):.2f} ± {statistics.stdev(values):.2f} (n={len(values)})"


def widths(records: list[dict[str, Any]]) -> str:
    parts = []
    for r in records:
        a = r["allocation"]
        hist = " ".join(f"W{k}:{v}" for k, v in a["histogram"].items())
        kl = a.get(f"{a.get('weights', 'rtn')}_kl")
        ukl = a.get(f"uniform_{a.get('weights', 'rtn')}_kl")
        parts.append(f"{a['allocator']}: {hist}; calib KL {kl:.4f} vs uniform {ukl:.4f}"
                     if kl is not None and ukl is not None else f"{a['allocator']}: {hist}")
    return "<br>".join(parts)


def table(rows: dict[int, dict[str, Any]]) -> list[str]:
    lines = ["| bytes | uniform avg bits | uniform config | " + " | ".join(COLUMNS)
             + " | allocations (widths on g128; KL on the allocation windows) |",
             "|---|---|---|" + "---|" * len(COLUMNS) + "---|"]
    for size in sorted(rows):
        row = rows[size]
        allocated = [r for c in COLUMNS[2:] for r in row.get(c, [])]
        bits = row.get("avg_bits")
        lines.append(f"| {size:,} | {'–' if bits is None else f'{bits:.3f}'} | "
                     f"{row.get('label', '–')} | "
                     + " | ".join(cell(row.get(c, [])) for c in COLUMNS)
                     + f" | {widths(allocated) or '–'} |")
    return lines


def format_rows(stores: list[Path]) -> list[str]:
    """Float-format weight rows (RTN; sizes with each format's own scale bytes)."""
    lines = ["| quant | formats | calib | bytes | avg bits | widths | wiki ppl |",
             "|---|---|---|---|---|---|---|"]
    for store in stores:
        if not store.exists():
            continue
        for line in store.read_text().splitlines():
            r = json.loads(line)
            q = r["config"]["quant"]
            if r.get("status") != "ok" or q.get("w_format", "int") == "int":
                continue
            alloc = r.get("allocation") or {}
            hist = " ".join(f"W{k}:{v}" for k, v in (alloc.get("histogram") or {}).items())
            m = r["metrics"]
            lines.append(f"| {q['name']} | {q['w_format']} family | {r['config']['calib']['name']}"
                         f" | {m['size/bytes']:,} | {m['size/avg_bits']:.3f} | {hist or '–'} | "
                         f"{m['ppl/wiki']:.2f} |")
    return lines if len(lines) > 2 else []


def figure(rows: dict[int, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, marker in zip(COLUMNS, "os^vD", strict=True):
        points = [(size / 2**20, statistics.fmean(r["metrics"]["ppl/wiki"] for r in row[name]))
                  for size, row in sorted(rows.items()) if row.get(name)]
        if points:
            ax.plot(*zip(*points, strict=True), marker=marker, label=name)
    ax.set_xlabel("model size (MiB, embeddings and norms at 16 bits)")
    ax.set_ylabel("wiki perplexity (40 × 512)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("SmolLM2-135M: uniform vs allocated widths at equal bytes")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    stores = [Path(p) for p in sys.argv[1:]] or STORES
    rows = collect(stores)
    names = ", ".join(str(p.relative_to(REPO)) if p.is_relative_to(REPO) else str(p)
                      for p in stores)
    lines = ["# Size vs perplexity (issue 14)", "",
             f"Built by `python experiments/mixed_precision/pareto_table.py` from {names}. "
             "SmolLM2-135M fp32, wiki ppl on 40 × 512 windows (float 14.12); GPTQ on 64 × 512 "
             "windows with the MSE grid; weights only, asymmetric. Mean ± sd where calibration "
             "seeds repeat. Allocated rows got the bytes of the uniform row on their line.", "",
             *table(rows), "", "![size vs ppl](pareto.png)", ""]
    formats = format_rows(stores)
    if formats:
        lines += ["## Float formats", "", "Widths from a float format's family (MXFP4 / MXFP6 / "
                  "MXFP8: one E8M0 byte per block of 32), RTN weights.", "", *formats, ""]
    (HERE / "pareto.md").write_text("\n".join(lines))
    figure(rows, HERE / "pareto.png")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
