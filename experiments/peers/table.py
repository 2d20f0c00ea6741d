"""Build experiments/peers/table.md from the results store only.

    python experiments/peers/table.py            # writes experiments/peers/table.md

Rows are weight formats, columns methods (abqlab presets with any setting that differs from the
preset named in brackets; llm-compressor recipes). A cell is the mean wiki perplexity over
calibration seeds ± the sample standard deviation, with the number of seeds. Records of the same
config hash keep only the latest; refused configs show the peer's reason.
"""

from __future__ import annotations

import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

from abqlab.track.store import read_records

HERE = Path(__file__).resolve().parent
PRESETS = HERE.parents[1] / "conf" / "calib"
METRIC = "ppl/wiki"
MAIN = ("abqlab rtn", "llm-compressor rtn", "abqlab gptq", "llm-compressor gptq", "abqlab awq",
        "llm-compressor awq", "abqlab awq_gptq")


def quant_label(quant: dict[str, Any]) -> str:
    group = quant.get("w_group", -1)
    size = "per-channel" if group == -1 else "per-tensor" if group == 0 else f"g{group}"
    return f"W{quant['w_bits']} {size} {'sym' if quant.get('w_sym') else 'asym'}"


def preset_settings(name: str) -> dict[str, dict[str, Any]]:
    path = PRESETS / f"{name}.yaml"
    if not path.exists():
        return {}
    return yaml.safe_load(path.read_text()).get("components", {}) or {}


def method_label(config: dict[str, Any]) -> str:
    calib = config["calib"]
    if "peer" in config:
        peer = config["peer"]
        order = peer.get("actorder", "static")
        extra = "" if order == "static" else f" (actorder={order})"
        return f"llm-compressor {peer['method']}{extra}"
    preset = preset_settings(calib["name"])
    diffs = []
    for component, settings in (calib.get("components") or {}).items():
        base = preset.get(component, {})
        if "groups" not in settings and component == "gptq":
            diffs.append("v1 solver")  # before act-order groups / Hessian modes existed
        diffs += [f"{k}={v}" for k, v in settings.items() if k in base and base[k] != v]
    return f"abqlab {calib['name']}" + (f" ({', '.join(diffs)})" if diffs else "")


def collect(store: Path) -> dict[tuple[str, str], list[dict[str, Any]]]:
    latest: dict[str, dict[str, Any]] = {}
    for record in read_records(store):
        latest[record.get("config_hash", "")] = record
    cells: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for record in latest.values():
        config = record["config"]
        cells[(quant_label(config["quant"]), method_label(config))].append(record)
    return cells


def cell(records: list[dict[str, Any]]) -> str:
    ok = [r for r in records if r.get("status") == "ok"]
    if not ok:
        reasons = {r.get("reason", r.get("status", "?")) for r in records}
        return f"{records[0].get('status')}: {'; '.join(sorted(reasons))[:80]}"
    values = [r["metrics"][METRIC] for r in ok]
    text = f"{statistics.mean(values):.2f}"
    if len(values) > 1:
        text += f" ± {statistics.stdev(values):.2f}"
    return text + f" (n={len(values)})"


def self_check(cells: dict[tuple[str, str], list[dict[str, Any]]]) -> list[str]:
    """RTN of both frameworks on the same model, windows and evaluation must agree to 0.01."""
    lines = []
    for quant in sorted({q for q, _ in cells}):
        ours = [r for r in cells.get((quant, "abqlab rtn"), []) if r.get("status") == "ok"]
        peer = [r for r in cells.get((quant, "llm-compressor rtn"), []) if r.get("status") == "ok"]
        if ours and peer:
            a, b = ours[-1]["metrics"][METRIC], peer[-1]["metrics"][METRIC]
            verdict = "ok" if abs(a - b) <= 0.01 else "MISMATCH"
            lines.append(f"- {quant}: abqlab RTN {a:.4f}, llm-compressor RTN {b:.4f}, "
                         f"|Δ| = {abs(a - b):.4f} ({verdict}, limit 0.01)")
    return lines


def render(store: Path) -> str:
    out: list[str] = []
    print = out.append  # noqa: A001 - collect the lines below
    cells = collect(store)
    quants = sorted({q for q, _ in cells})
    methods = [m for m in MAIN if any((q, m) in cells for q in quants)]
    print("# abqlab vs llm-compressor on SmolLM2-135M (wiki ppl, 40 × 512; FP 14.12)\n")
    print(f"Built by `python experiments/peers/table.py` from `{store.name}` "
          f"({sum(len(v) for v in cells.values())} records). Mean ± sd over calibration "
          "seeds (64 × 512 train windows each).\n")
    print("| weights | " + " | ".join(methods) + " |")
    print("|---" * (len(methods) + 1) + "|")
    for quant in quants:
        row = [cell(cells[(quant, m)]) if (quant, m) in cells else "" for m in methods]
        print(f"| {quant} | " + " | ".join(row) + " |")
    print("\n## Every configuration\n")
    print("| weights | method | wiki ppl | seeds | calibration s (mean) |")
    print("|---|---|---|---|---|")
    for (quant, method), records in sorted(cells.items()):
        seeds = sorted({r["config"]["calib"]["seed"] for r in records})
        ok = [r for r in records if r.get("status") == "ok"]
        seconds = statistics.mean(r["timings"].get("calibration_s", 0) for r in ok) if ok else 0
        print(f"| {quant} | {method} | {cell(records)} | {','.join(map(str, seeds))} | "
              f"{seconds:.0f} |")
    print("\n## Self-check (same model, windows and evaluation code on both sides)\n")
    out.extend(self_check(cells))
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> None:
    store = Path(argv[0]) if argv else HERE / "runs.jsonl"
    target = HERE / "table.md"
    target.write_text(render(store))
    print(f"wrote {target}")


if __name__ == "__main__":
    main(sys.argv[1:])
