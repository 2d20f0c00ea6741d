"""Tables of the issue-8 diagnosis from its stores (runs.jsonl: 2-block runs; full_runs.jsonl:
full-model runs through the ``abqlab`` pipeline). ``python experiments/calib_diagnosis/table.py``"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).parent


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def two_block_table(runs: list[dict]) -> str:
    seeds = sorted({r["seed"] for r in runs})
    lines = [
        "| variant | epochs | "
        + " | ".join(f"seed {s}: MSE (min qkv scale)" for s in seeds)
        + " |",
        "|---|---|" + "---|" * len(seeds),
    ]
    for variant in dict.fromkeys(r["variant"] for r in runs):
        for epochs in sorted({r["epochs"] for r in runs if r["variant"] == variant}):
            cells = []
            for seed in seeds:
                match = [
                    r
                    for r in runs
                    if (r["variant"], r["epochs"], r["seed"]) == (variant, epochs, seed)
                ]
                r = match[-1] if match else None
                qkv = float("nan") if r is None else r["min_scale_block0"].get("qkv", float("nan"))
                cells.append("" if r is None else f"{r['last_block_mse']:.3f} ({qkv:.4f})")
            lines.append(f"| {variant} | {epochs} | " + " | ".join(cells) + " |")
    rtn = {r["seed"]: r["rtn_mse"] for r in runs}
    lines.append("| RTN | – | " + " | ".join(f"{rtn[s]:.3f}" for s in seeds) + " |")
    return "\n".join(lines)


def full_table(runs: list[dict]) -> str:
    lines = [
        "| preset | quant | epochs | smoothing lr / param / init | clipping lr | eval windows "
        "| wiki ppl | calib s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        c, comps = r["config"]["calib"], r["config"]["calib"]["components"]
        sm, cl = comps.get("smoothing", {}), comps.get("clipping", {})
        ppl = r["metrics"].get("ppl/wiki")
        lines.append(
            f"| {c['name']} | {r['config']['quant']['name']} | {c['epochs']} | "
            f"{sm.get('lr')} / {sm.get('param', 'linear')} / {sm.get('init', 'closed_form')} | "
            f"{cl.get('lr')} | {r['config']['eval']['max_windows']} | "
            f"{'failed' if ppl is None else f'{ppl:.2f}'} | "
            f"{r['timings'].get('calibration_s', 0):.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    print("## 2 blocks of SmolLM2, W4A4, omniquant preset, 4 × 64 calibration windows\n")
    print("Last-block output MSE vs float on the calibration windows; smallest qkv smoothing")
    print("scale of block 0 after training (0.0000 = clamped at MIN_SCALE after crossing zero).\n")
    print(two_block_table(rows(HERE / "runs.jsonl")))
    full = HERE / "full_runs.jsonl"
    if full.exists():
        print("\n## Full SmolLM2 (30 blocks), 8 × 256 calibration windows, wiki ppl\n")
        print(full_table(rows(full)))


if __name__ == "__main__":
    main()
