"""Tables of the rotation experiments (issue 12), built from results stores only.

    python experiments/rotations/table.py    # writes experiments/rotations/table.md
    python experiments/rotations/table.py --also OTHER/runs.jsonl   # + baselines from any store

Reads, in this folder: runs.jsonl (the method × rotation grid of plan.txt), explore.jsonl (W4A4
variants), zeroshot.jsonl (if any) and hadamard_cost.json (hadamard_cost.py). No-rotation
baselines that were measured elsewhere on the same evaluation (SmolLM2-135M, wiki, 40 × 512) come
from the stores in BASELINE_STORES, labelled with their source. Every row is labelled by the bits
actually used (``W{w_bits}A{a_bits}``), not by the quant preset's name: ``quant=w4a4
quant.a_bits=16`` is W4A16.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from abqlab.tables.summary import latest_by_config

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
FLOAT_PPL = 14.12  # SmolLM2-135M, wiki test split, 40 × 512 (experiments/rtn_baseline)
GRID = ("W4A4", "W4A8", "W3A16", "W2*A16")
SPLIT = ("W4A16", "W16A4")  # W4A4's weight and activation halves on their own
METHODS = ("rtn", "gptq", "abq")
TABLE_BUDGET = (8, 256)  # calib_table: 8 windows × 256 tokens (rtn needs none)
BASELINE_STORES = ("experiments/rtn_baseline/runs.jsonl", "experiments/calib_table/runs.jsonl",
                   "experiments/abq_ablation/runs.jsonl")
DEFAULT_ROTATION = {"kind": "hadamard", "residual": True, "heads": True, "online_down": True,
                    "online_o": False, "online_qk": False, "learn": []}
SITES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
TASKS = ("piqa", "arc_easy", "arc_challenge", "hellaswag", "winogrande", "boolq")


def rotation_of(config: dict[str, Any]) -> dict[str, Any] | None:
    settings = (config.get("calib", {}).get("components") or {}).get("rotation")
    if settings is None or not settings.get("enabled", True):
        return None
    return settings


def bits(config: dict[str, Any]) -> str:
    """The precision actually run: W{w}A{a}, * for bit balance, g{n} for weight groups."""
    quant = config["quant"]
    star = "*" if quant.get("w_bit_balance") else ""
    group = f"g{quant['w_group']}" if quant.get("w_group", -1) > 0 else ""
    return f"W{quant['w_bits']}{star}A{quant['a_bits']}{group}"


def family(config: dict[str, Any]) -> str:
    """rtn / gptq / abq / spinquant (quarot is gptq + rotation)."""
    name = config["calib"]["name"]
    return {"quarot": "gptq"}.get(name, name)


def minmax_gptq(config: dict[str, Any]) -> bool:
    """GPTQ with the min-max grid (every GPTQ record before 160b2bb made the MSE grid the
    default; records from before the grid option have no key and ran min-max)."""
    gptq = (config["calib"].get("components") or {}).get("gptq")
    return bool(gptq) and gptq.get("enabled", True) and gptq.get("grid", "minmax") != "mse"


def budget(config: dict[str, Any]) -> tuple[int, int] | None:
    """Calibration windows × tokens; None for rtn (no calibration data used)."""
    calib = config["calib"]
    if calib["method"] == "rtn":
        return None
    return calib["nsamples"], calib["seqlen"]


def rotation_label(config: dict[str, Any]) -> str:
    rotation = rotation_of(config)
    if rotation is None:
        return "none"
    extra = [f"{k}={v}" for k, v in rotation.items()
             if k in DEFAULT_ROTATION and DEFAULT_ROTATION[k] != v]
    return "Hadamard" + (f" ({', '.join(extra)})" if extra else "")


def details(config: dict[str, Any]) -> str:
    """Everything else that sets the run apart (budget, epochs, clip, skipped sites, pairs)."""
    parts = []
    calib, quant = config["calib"], config["quant"]
    size = budget(config)
    if size is not None:
        parts.append(f"calib {size[0]}×{size[1]}")
    if calib.get("epochs"):
        parts.append(f"{calib['epochs']} ep")
    if minmax_gptq(config):
        parts.append("GPTQ min-max grid")
    if quant.get("a_clip", 1.0) != 1.0:
        parts.append(f"a_clip {quant['a_clip']}")
    if quant.get("skip"):
        kept = [s for s in SITES if s not in {p.strip("*").split(".")[-1] for p in quant["skip"]}]
        parts.append(f"only {'/'.join(kept)} quantized")
    rotation = rotation_of(config) or {}
    if "residual" in (rotation.get("learn") or []):
        weights = "float" if rotation.get("residual_weights") is False else "quantized"
        parts.append(f"R1 learned (lr {rotation.get('residual_lr', 1e-3):g}, "
                     f"{rotation.get('residual_steps', 100)} steps, weights {weights})")
    gptq = (calib.get("components") or {}).get("gptq") or {}
    if gptq.get("hessian", "float") != "float":
        parts.append(f"GPTQ {gptq['hessian']} Hessians")
    if gptq.get("act_aware"):
        extra = [f"damp {gptq.get('act_aware_damp', 0.01):g}"]
        if gptq.get("act_aware_target", "stream") != "stream":
            extra.append(f"{gptq['act_aware_target']} target")
        if gptq.get("act_aware_gap", "full") != "full":
            extra.append(f"{gptq['act_aware_gap']} gap")
        parts.append(f"GPTQ act-aware ({', '.join(extra)})")
    if gptq.get("skip_first_tokens"):
        parts.append(f"GPTQ skips {gptq['skip_first_tokens']} first token(s)")
    clip = (calib.get("components") or {}).get("act_clip")
    if clip and clip.get("enabled", True):
        how = [w for w, on in (("shared", clip.get("shared")),
                                ("before GPTQ", clip.get("before_gptq"))) if on]
        parts.append("act_clip search" + (f" ({', '.join(how)})" if how else ""))
    for pattern, width in (quant.get("layer_a_bits") or {}).items():
        parts.append(f"A{width} at {pattern.strip('*')}")
    pairs = ((calib.get("components") or {}).get("smoothing") or {}).get("pairs")
    if pairs:
        parts.append(f"smoothing pairs {','.join(pairs)}")
    if bits(config).upper() != quant["name"].upper().replace("BB-", "*").replace("W2BB", "W2*"):
        parts.append(f"quant={quant['name']} with overrides")
    return ", ".join(parts)


def ppl(record: dict[str, Any]) -> float | None:
    if record.get("status") != "ok":
        return None
    return record.get("metrics", {}).get("ppl/wiki")


def same_eval(record: dict[str, Any]) -> bool:
    """SmolLM2-135M in float32, wiki only, 40 windows × 512 tokens: the project protocol."""
    config = record.get("config", {})
    model, ev = config.get("model", {}), config.get("eval", {})
    # records older than the datasets list evaluated the embedded wiki split only
    datasets = [d if isinstance(d, str) else d.get("name") for d in ev.get("datasets", ["wiki"])]
    return (model.get("name") == "smollm2-135m" and model.get("num_hidden_layers") is None
            and model.get("dtype") == "float32" and ev.get("seqlen") == 512
            and ev.get("max_windows") == 40 and datasets == ["wiki"])


def plain(record: dict[str, Any]) -> bool:
    """A grid configuration: preset bits, no a_clip or skips, default rotation (or none)."""
    config = record["config"]
    quant = config["quant"]
    if quant.get("a_clip", 1.0) != 1.0 or quant.get("skip") or quant.get("layer_a_bits"):
        return False
    components = config["calib"].get("components") or {}
    if components.get("act_clip"):
        return False
    gptq = components.get("gptq") or {}
    if gptq.get("act_aware") or gptq.get("skip_first_tokens") or (
            gptq.get("hessian", "float") != "float"):
        return False
    if quant.get("k_bits", 16) != 16 or quant.get("v_bits", 16) != 16:
        return False
    rotation = rotation_of(config)
    return rotation is None or rotation_label(config) == "Hadamard"


def summarise(values: list[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.4g}"
    return f"{statistics.fmean(values):.4g} ± {statistics.stdev(values):.2g} (n={len(values)})"


def load(path: Path) -> list[dict[str, Any]]:
    return latest_by_config(path) if path.exists() else []


def shown(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def baselines(also: list[Path]) -> list[dict[str, Any]]:
    """No-rotation rtn / gptq / abq runs of the grid's precisions from other experiments."""
    found = []
    stores = [REPO / s for s in BASELINE_STORES] + also
    for store in dict.fromkeys(p.resolve() for p in stores):
        for record in load(store):
            config = record.get("config", {})
            if (same_eval(record) and ppl(record) is not None and rotation_of(config) is None
                    and config["calib"]["name"] in METHODS and bits(config) in GRID + SPLIT
                    and plain(record)):
                found.append({**record, "_source": shown(store)})
    return found


def grid_table(records: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """W × method × (without, with rotation); cells off the calib_table budget carry a mark."""
    marks: dict[str, str] = {}
    lines = ["| W/A | " + " | ".join(f"{m} | {m} + rotation" for m in METHODS) + " |",
             "|---" * (1 + 2 * len(METHODS)) + "|"]
    for precision in GRID + SPLIT:
        cells = []
        for method in METHODS:
            for rotated in (False, True):
                chosen = [r for r in records if bits(r["config"]) == precision
                          and family(r["config"]) == method and plain(r)
                          and (rotation_of(r["config"]) is not None) == rotated]
                # GPTQ cells: the MSE grid (the presets' default) where measured, else min-max
                chosen = [r for r in chosen if not minmax_gptq(r["config"])] or chosen
                on_budget = [r for r in chosen if budget(r["config"]) in (None, TABLE_BUDGET)]
                use = list(dedupe(on_budget or chosen))
                text = summarise([v for v in map(ppl, use) if v is not None])
                notes = sorted({note(r) for r in use} - {""})
                for n in notes:
                    marks.setdefault(n, f"[{len(marks) + 1}]")
                cells.append(text + "".join(marks[n] for n in notes))
        name = f"{precision} (W4A4 split)" if precision in SPLIT else precision
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    legend = [f"{mark} {text}" for text, mark in marks.items()]
    return lines, legend


def dedupe(records: list[dict[str, Any]]) -> Any:
    """One record per calib seed, rotation seed, budget and epochs, the newest (``finished``):
    a store may hold the same run twice under two config hashes when a code change added a
    config key, and two stores may both hold one run (calib_table and abq_ablation share ABQ
    seed 2). RTN has no seed or epochs: one record, the newest."""
    kept: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in sorted(records, key=lambda record: str(record.get("finished", ""))):
        config = r["config"]
        rotation = rotation_of(config) or {}
        if config["calib"]["method"] == "rtn":
            key: tuple[Any, ...] = ("rtn", rotation.get("seed"))
        else:
            key = (config["calib"]["seed"], rotation.get("seed"), budget(config),
                   config["calib"].get("epochs"))
        kept[key] = r
    return kept.values()


def note(record: dict[str, Any]) -> str:
    parts = []
    size = budget(record["config"])
    if size not in (None, TABLE_BUDGET):
        parts.append(f"calibrated on {size[0]}×{size[1]} (not the table's 8×256)")
    if minmax_gptq(record["config"]):
        parts.append("GPTQ with the min-max grid (the MSE grid is the default since 160b2bb)")
    if "_source" in record:
        parts.append(f"from {record['_source']}")
    return "; ".join(parts)


def detail_table(records: list[dict[str, Any]]) -> list[str]:
    lines = ["| W/A | method | rotation | details | calib seed | wiki ppl | × float | calib s | "
             "config |", "|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        config = r["config"]
        value = ppl(r)
        shown = f"{value:.2f}" if value is not None else r.get("status", "?")
        ratio = f"{value / FLOAT_PPL:.2f}" if value is not None else "–"
        secs = r.get("timings", {}).get("calibration_s")
        lines.append(f"| {bits(config)} | {config['calib']['name']} | {rotation_label(config)} | "
                     f"{details(config)} | {config['calib']['seed']} | {shown} | {ratio} | "
                     f"{'–' if secs is None else f'{secs:.0f}'} | "
                     f"`{r.get('config_hash', '')[:8]}` |")
    return lines


def zeroshot_grid(records: list[dict[str, Any]]) -> list[str]:
    """avg6 (%) by W × method × (without, with rotation), grid configurations only; a cell with
    several runs (seeds or re-runs of one configuration) shows each, newest last."""
    lines = ["| W/A | " + " | ".join(f"{m} | {m} + rotation" for m in METHODS) + " |",
             "|---" * (1 + 2 * len(METHODS)) + "|"]
    for precision in GRID:
        cells = []
        for method in METHODS:
            for rotated in (False, True):
                values = [100 * r["metrics"]["acc/avg6"] for r in records
                          if r.get("status") == "ok" and "acc/avg6" in r.get("metrics", {})
                          and bits(r["config"]) == precision and family(r["config"]) == method
                          and plain(r) and (rotation_of(r["config"]) is not None) == rotated]
                cells.append(" / ".join(f"{v:.1f}" for v in values) or "–")
        lines.append(f"| {precision} | " + " | ".join(cells) + " |")
    return lines


def zeroshot_table(records: list[dict[str, Any]]) -> list[str]:
    lines = ["| W/A | method | rotation | details | limit | " + " | ".join(TASKS) + " | avg6 |",
             "|---" * (6 + len(TASKS)) + "|"]
    for r in records:
        if r.get("status") != "ok":
            continue
        m, config = r["metrics"], r["config"]
        cells = ["–" if m.get(f"acc/{t}") is None else f"{100 * m[f'acc/{t}']:.1f}" for t in TASKS]
        avg = m.get("acc/avg6")
        lines.append(f"| {bits(config)} | {config['calib']['name']} | {rotation_label(config)} | "
                     f"{details(config) or '–'} | {config['eval'].get('limit')} | "
                     + " | ".join(cells)
                     + f" | {'–' if avg is None else f'{100 * avg:.1f}'} |")
    return lines


def cost_table(record: dict[str, Any]) -> list[str]:
    lines = [f"torch {record['torch']}, {record['cpu']}, {record['threads']} thread(s), median of "
             f"{record['repeats']}; {record.get('note', '')}.", "",
             "| shape | tokens | online rotation (FWHT) µs | as two small GEMMs µs | as one dense "
             "matmul µs | the linear µs | best rotation / linear | ops per token (sign, FWHT "
             "adds, dense MACs) |", "|---|---|---|---|---|---|---|---|"]
    for r in record["rows"]:
        lin = r.get("linear_s")
        best = min(r["rotation_s"], r.get("kron_gemm_s", float("inf")))
        ops = r["ops_per_token"]

        def us(key: str, row: dict[str, Any] = r) -> str:
            return f"{row[key] * 1e6:.0f}" if key in row else "–"

        lines.append(f"| {r['shape']} | {r['tokens']} | {us('rotation_s')} | {us('kron_gemm_s')} "
                     f"| {us('dense_matmul_s')} | {us('linear_s')} | "
                     f"{f'{best / lin:.2f}' if lin else '–'} | "
                     f"{ops['sign_mults']}, {ops['fwht_adds']}, {ops['dense_macs']} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--also", type=Path, nargs="*", default=[],
                        help="more stores to take no-rotation baselines from")
    args = parser.parse_args()
    runs, explore = load(HERE / "runs.jsonl"), load(HERE / "explore.jsonl")
    base = baselines(args.also)
    out = ["# Rotations on SmolLM2-135M (issue 12)", "",
           f"Wiki perplexity on the project protocol (40 × 512 held-out windows; float "
           f"{FLOAT_PPL}). Weights per output channel, activations per token, both asymmetric. "
           "Generated by `python experiments/rotations/table.py` from the stores named below; "
           "do not edit by hand.", "",
           "## Method × rotation", "",
           "runs.jsonl (plan.txt), explore.jsonl and the no-rotation baselines of other "
           "experiments on the same evaluation. – = not measured. Mean ± std when seeds repeat.",
           ""]
    lines, legend = grid_table(runs + explore + base)
    out += [*lines, "", *legend, ""]
    out += ["## Every run", "", "### runs.jsonl", "",
            *(detail_table(runs) if runs else ["(none yet)"]), "",
            "### explore.jsonl (W4A4 variants: what limits W4A4 after rotation)", "",
            *(detail_table(explore) if explore else ["(none)"]), "",
            "### No-rotation baselines from other experiments", "",
            *(detail_table(base) if base else ["(none)"]), "",
            "Sources: " + ", ".join(sorted({r["_source"] for r in base})) + ".", ""]
    zeroshot = load(HERE / "zeroshot.jsonl")
    out += ["## Zero-shot accuracy (zeroshot.jsonl)", "",
            *((["avg6 (%) of the grid configurations (each run of a cell shown):", "",
                *zeroshot_grid(zeroshot), "", "Every run:", "", *zeroshot_table(zeroshot)])
              if zeroshot else ["Not measured yet (see README.md)."]),
            ""]
    cost = HERE / "hadamard_cost.json"
    if cost.exists():
        out += ["## What the online Hadamard costs (hadamard_cost.json)", "",
                *cost_table(json.loads(cost.read_text())), ""]
    (HERE / "table.md").write_text("\n".join(out))
    print("\n".join(out))


if __name__ == "__main__":
    main()
