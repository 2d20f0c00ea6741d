"""Issue 14's size–perplexity evidence: uniform RTN / GPTQ vs allocated GPTQ at equal bytes.

Protocol (as experiments/peers): SmolLM2-135M, GPTQ on 64 × 512 wiki train windows (seed 2,
MSE grid), wiki ppl on 40 × 512 held-out windows, one thread per run. An allocated row gets the
byte budget of a uniform row (``quant.budget.bytes`` = its ``size/bytes``) and chooses widths
{2, 3, 4} (or {3, 4, 5, 6}) on groups of 128, measured on GPTQ candidates
(``quant.budget.weights=gptq``, 8 × 256 windows); ``calib=gptq`` then quantizes each linear at
its width. The uniform rows that experiments/peers already holds (W3/W4 per channel and g64) are
read from there by the table, not rerun.

    python experiments/mixed_precision/pareto.py            # every row not yet in the store
    python experiments/mixed_precision/pareto.py --only 3.27   # rows whose name contains this
    python experiments/mixed_precision/pareto.py --list
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
STORE = os.environ.get("MIXED_STORE", str(HERE / "runs.jsonl"))
COMMON = ["model=smollm2-135m", "logger=none", f"results_store={STORE}", "skip_done=true",
          "eval=ppl", "eval.max_windows=40", "eval.seqlen=512",
          "hydra.run.dir=outputs/mixed/${now:%Y-%m-%d_%H-%M-%S}_${quant.name}_${calib.name}"]
GPTQ = ["calib=gptq", "calib.nsamples=64", "calib.seqlen=512"]
RTN = ["calib=rtn"]
# uniform rows run here: name → (quant overrides, size/bytes of the whole model)
UNIFORM: dict[str, tuple[list[str], int]] = {
    "w2g64": (["quant=w2a16g64"], 89_870_976),
    "w3g128": (["quant=w3a16g128"], 100_100_736),
    "w4g128": (["quant=w4a16g128"], 113_371_776),
    "w4g32": (["quant=w4a16", "quant.w_group=32", "quant.name=w4a16g32"], 123_048_576),
}
# budgets of allocated rows: the size of a uniform row (here or in experiments/peers)
BUDGETS: dict[str, tuple[int, list[int]]] = {
    "2.50": (89_870_976, [2, 3, 4]),  # W2 g64
    "3.05": (97_128_576, [2, 3, 4]),  # W3 per channel (peers)
    "3.27": (100_100_736, [2, 3, 4]),  # W3 g128: issue 14's goal
    "3.50": (103_142_016, [2, 3, 4]),  # W3 g64 (peers)
    "4.50": (116_413_056, [3, 4, 5, 6]),  # W4 g64 (peers)
    "5.00": (123_048_576, [3, 4, 5, 6]),  # W4 g32
}
# float formats (RTN weights): uniform MXFP4 / MXFP6 and a knapsack over MXFP4/6/8 between them
MX = ["quant.w_group=32", "quant.w_sym=true", *RTN]
FORMAT_ROWS: list[tuple[str, list[str]]] = [
    ("mxfp4/rtn", ["quant=w4a16-mxfp4", *MX]),
    ("mxfp6/rtn", ["quant=w4a16-mxfp4", "quant.w_bits=6", "quant.w_format=mxfp6_e2m3",
                   "quant.name=w6a16-mxfp6", *MX]),
    ("alloc-knapsack-mx-5.25/rtn", [
        "quant=mixed", "quant.name=mixed-knapsack-mx-5.25", "quant.w_format=mxfp4",
        "quant.w_bits=4", "quant.budget.candidates=[4,6,8]", "quant.budget.avg_bits=5.25",
        "quant.budget.nsamples=8", "quant.budget.seqlen=256", *MX]),
]
ALLOCATORS = {
    "knapsack": ["quant=mixed"],
    "search": ["quant=mixed", "quant.budget.allocator=search", "quant.budget.steps=40"],
    "learned": ["quant=mixed-learned", "quant.budget.steps=12"],
}


def allocated(budget: str, allocator: str) -> list[str]:
    size, widths = BUDGETS[budget]
    return [*ALLOCATORS[allocator], f"quant.name=mixed-{allocator}-{budget}",
            "quant.w_group=128", "quant.w_partial_group=true", "quant.budget.avg_bits=null",
            f"quant.budget.bytes={size}", f"quant.budget.candidates=[{','.join(map(str, widths))}]",
            "quant.budget.weights=gptq", "quant.budget.nsamples=8", "quant.budget.seqlen=256",
            *GPTQ]


def runs() -> list[tuple[str, list[str]]]:
    """Every planned run, in the order they are worth running (the goal's budget first)."""
    out = [("w3g128/rtn", [*UNIFORM["w3g128"][0], *RTN])]
    out += [(f"alloc-{a}-3.27/gptq", allocated("3.27", a)) for a in ("knapsack", "search")]
    out += [("w3g128/gptq", [*UNIFORM["w3g128"][0], *GPTQ])]
    out += [("alloc-learned-3.27/gptq", allocated("3.27", "learned"))]
    for name in ("w2g64", "w4g128", "w4g32"):
        out += [(f"{name}/rtn", [*UNIFORM[name][0], *RTN])]
    for budget, uniform in (("2.50", "w2g64"), ("3.50", None), ("4.50", None), ("5.00", "w4g32"),
                            ("3.05", None)):
        out += [(f"alloc-search-{budget}/gptq", allocated(budget, "search"))]
        out += [(f"{uniform}/gptq", [*UNIFORM[uniform][0], *GPTQ])] if uniform else []
    out += [("w4g128/gptq", [*UNIFORM["w4g128"][0], *GPTQ])]
    out += [(f"alloc-knapsack-{b}/gptq", allocated(b, "knapsack")) for b in ("2.50", "4.50")]
    out += FORMAT_ROWS
    return out


def run_cli(name: str, args: list[str]) -> None:
    exe = shutil.which("abqlab")
    command = [exe, *args] if exe else [sys.executable, "-m", "abqlab.cli", *args]
    print(f"[{time.strftime('%H:%M:%S')}] {name}: {' '.join(args)}", flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    if subprocess.run(command, cwd=REPO, env=env, check=False).returncode:
        print("  -> failed (recorded as failed in the store)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="", help="run rows whose name contains this")
    parser.add_argument("--list", action="store_true", help="print the rows and exit")
    args = parser.parse_args()
    for name, overrides in runs():
        if args.only in name:
            print(name, " ".join(overrides)) if args.list else run_cli(name, [*COMMON, *overrides])


if __name__ == "__main__":
    main()
