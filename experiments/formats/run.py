"""Run the number-format evidence (experiments/formats/rows.py) through the ``abqlab`` CLI.

Every run is recorded in experiments/formats/runs.jsonl and skipped on a re-run once it has an
ok record (``skip_done``); one run at a time, one thread (the machine is shared).

    python experiments/formats/run.py ppl        # perplexity rows (RTN first, then GPTQ)
    python experiments/formats/run.py zeroshot   # RTN rows' zero-shot avg6 (limit 50); the GPTQ
                                                 # rows get theirs inside their ppl run
    python experiments/formats/run.py ppl --only fp4   # rows whose name contains "fp4"
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from rows import SIX_TASKS, ZEROSHOT, ZEROSHOT_WITH_PPL, ppl_runs

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
STORE = os.environ.get("FORMATS_STORE", str(HERE / "runs.jsonl"))
COMMON = ["logger=none", f"results_store={STORE}", "skip_done=true", "eval.seqlen=512",
          "hydra.run.dir=outputs/formats/${now:%Y-%m-%d_%H-%M-%S}_${quant.name}_${calib.name}"]


def run_cli(name: str, args: list[str]) -> None:
    exe = shutil.which("abqlab")
    command = [exe, *args] if exe else [sys.executable, "-m", "abqlab.cli", *args]
    print(f"[{time.strftime('%H:%M:%S')}] {name}: {' '.join(args)}", flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=REPO, env=env, check=False)
    if result.returncode:
        print(f"  -> exit {result.returncode} (recorded as failed in the store)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["ppl", "zeroshot"])
    parser.add_argument("--only", default="", help="run rows whose name contains this")
    parser.add_argument("--limit", type=int, default=50, help="zero-shot documents per task")
    args = parser.parse_args()
    if args.what == "ppl":
        runs = [(n, [*o, "eval=ppl", "eval.max_windows=40",
                     *([SIX_TASKS, f"eval.limit={args.limit}"] if n in ZEROSHOT_WITH_PPL else [])])
                for n, o in ppl_runs()]
    else:
        runs = [(n, [*o, "eval=zeroshot", SIX_TASKS, f"eval.limit={args.limit}"])
                for n, o in ZEROSHOT]
    for name, overrides in runs:
        if args.only in name:
            run_cli(name, [*COMMON, *overrides])


if __name__ == "__main__":
    main()
