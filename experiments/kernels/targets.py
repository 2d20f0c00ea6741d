"""The kernel issue's targets, measured / target, from one GPU run's bench.csv and decode.csv.

    python experiments/kernels/targets.py experiments/kernels/results/<run>   # prints Markdown

GEMV (M = 1): worst % of roofline over the benchmarked (N, K) shapes, activation quantization
included for the A8 rows. GEMM (M >= 256): our time against ``torch._int_mm`` on the same shape,
worst over shapes and M (throughput ratio = int_mm µs / ours µs). Decode: one step at batch 1.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

GEMV_TARGET_PCT = 80.0
GEMM_TARGET = 0.9
DECODE_TARGETS = [("W2A8", "W8A8", 1.6), ("W2A8", "FP16", 2.8), ("W4A16", "FP16", 3.0)]


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def mark(ok: bool) -> str:
    return "met" if ok else "**missed**"


def gemv_rows(bench: list[dict[str, str]]) -> list[str]:
    out = []
    for act in ("A8", "A16"):
        for bits in range(2, 9):
            method = f"W{bits}{act}"
            rows = [r for r in bench if r["method"] == method and r["M"] == "1"
                    and r["act"] in ("quant", "-")]
            if not rows:
                continue
            worst = min(float(r["pct_roofline"]) for r in rows)
            out.append(f"| GEMV M=1 {method} (worst shape) | {worst:.1f}% of roofline | "
                       f"≥ {GEMV_TARGET_PCT:.0f}% | {mark(worst >= GEMV_TARGET_PCT)} |")
    return out


def gemm_rows(bench: list[dict[str, str]]) -> list[str]:
    base = {(r["N"], r["K"], r["M"]): float(r["us"]) for r in bench
            if r["method"] == "torch-int_mm-int8"}
    out = []
    for method in ("W4A8", "W8A8"):
        ratios = [base[(r["N"], r["K"], r["M"])] / float(r["us"]) for r in bench
                  if r["method"] == method and r["act"] == "quant" and int(r["M"]) >= 256
                  and (r["N"], r["K"], r["M"]) in base]
        if ratios:
            worst = min(ratios)
            out.append(f"| GEMM M≥256 {method} / `_int_mm` throughput (worst) | {worst:.2f}× | "
                       f"≥ {GEMM_TARGET}× | {mark(worst >= GEMM_TARGET)} |")
    return out


def decode_rows(decode: list[dict[str, str]]) -> list[str]:
    step = {r["config"]: float(r["step_ms"]) for r in decode if r["batch"] == "1"}
    out = []
    for ours, base, target in DECODE_TARGETS:
        if ours in step and base in step:
            speedup = step[base] / step[ours]
            out.append(f"| decode batch 1: {ours} vs {base} tokens/s | {speedup:.2f}× | "
                       f"≥ {target}× | {mark(speedup >= target)} |")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a results folder with bench.csv / decode.csv")
    args = parser.parse_args()
    lines = ["| target | measured | goal | |", "|---|---|---|---|"]
    if (args.run / "bench.csv").exists():
        bench = read_csv(args.run / "bench.csv")
        lines += gemv_rows(bench) + gemm_rows(bench)
    if (args.run / "decode.csv").exists():
        lines += decode_rows(read_csv(args.run / "decode.csv"))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
