"""Zero-shot evidence: SmolLM2-135M FP vs RTN W4A8 (per-channel W, per-token A) through lm-eval.

Runs the ``abqlab`` CLI once per config (recorded in the results store, skipped if already
there with ``skip_done``), then writes ``experiments/zeroshot/results.md`` from the store only.

    python experiments/zeroshot/run.py --limit 30          # run missing configs, write table
    python experiments/zeroshot/run.py --limit 30 --table  # table only
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from abqlab.eval.tasks import ABQ_SIX
from abqlab.track.store import read_records

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
EXPERIMENT = "zeroshot"  # the eval preset; ``experiment=`` is a config group, not settable here
QUANTS = ("fp", "w4a8")
TASKS = (*ABQ_SIX, "lambada")
SHORT = {"arc_easy": "arc_e", "arc_challenge": "arc_c", "winogrande": "wino"}


def overrides(quant: str, limit: int | None, model: str) -> list[str]:
    return [
        f"model={model}",
        f"quant={quant}",
        "calib=rtn",
        "eval=zeroshot",
        f"eval.limit={'null' if limit is None else limit}",
        "skip_done=true",
    ]


def run_cli(args: list[str]) -> float:
    """One ``abqlab`` run; its wall time in seconds (the record holds the details)."""
    exe = shutil.which("abqlab")
    command = [exe, *args] if exe else [sys.executable, "-m", "abqlab.cli", *args]
    print("$", " ".join(command), flush=True)
    start = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True)
    return time.perf_counter() - start


def latest(store: Path, quant: str, limit: int | None, model: str) -> dict[str, Any] | None:
    """The newest ok ``eval=zeroshot`` record for ``model`` × ``quant`` at ``limit``."""
    found = None
    for record in read_records(store):
        config = record.get("config", {})
        if (
            record.get("status") == "ok"
            and config.get("eval", {}).get("name") == EXPERIMENT
            and config.get("model", {}).get("name") == model
            and config.get("quant", {}).get("name") == quant
            and config.get("eval", {}).get("limit") == limit
        ):
            found = record
    return found


def pct(metrics: dict[str, float], key: str) -> str:
    value = metrics.get(key)
    if value is None:
        return "–"
    err = metrics.get(key.replace("/", "_stderr/", 1))
    return f"{100 * value:.1f}" + (f" ± {100 * err:.1f}" if err is not None else "")


def table(records: dict[str, dict[str, Any] | None], limit: int | None, model: str) -> str:
    head = [SHORT.get(t, t) for t in TASKS]
    lines = [
        f"# Zero-shot: {model}, FP vs RTN W4A8 (lm-eval, local tasks, limit={limit})",
        "",
        "acc (%) ± stderr; acc_norm in brackets where the task defines it. "
        "avg6 = mean acc over the six ABQ-LLM tasks; "
        "avg6-paper = acc_norm where defined, else acc.",
        "",
        "| quant | " + " | ".join(head) + " | avg6 | avg6-paper | eval s | run s | config |",
        "|---" * (len(head) + 6) + "|",
    ]
    for quant, record in records.items():
        if record is None:
            lines.append(f"| {quant} | " + " | ".join("" for _ in head) + " | | | | | not run |")
            continue
        metrics = record["metrics"]
        cells = []
        for task in TASKS:
            text = pct(metrics, f"acc/{task}")
            if f"acc_norm/{task}" in metrics:
                text += f" [{100 * metrics[f'acc_norm/{task}']:.1f}]"
            cells.append(text)
        timings = record.get("timings", {})
        paper = 100 * metrics.get("acc_norm/avg6", float("nan"))
        lines.append(
            f"| {quant} | "
            + " | ".join(cells)
            + f" | {pct(metrics, 'acc/avg6')} | {paper:.1f}"
            + f" | {timings.get('eval_s', float('nan')):.0f} | {sum(timings.values()):.0f}"
            + f" | `{record['config_hash']}` |"
        )
    first = next((r for r in records.values() if r), None)
    if first:
        info = first.get("eval_info", {}).get("lm_eval", {}).get("versions", {})
        env = first.get("environment", {})
        lines += [
            "",
            f"lm-eval {info.get('lm_eval')}, add_bos_token={info.get('add_bos_token')}, "
            f"documents per task: {first['metrics'].get('n/piqa', '?'):.0f} (first N of each "
            f"validation split; LAMBADA test). Device: {env.get('device', '?')}. "
            "Numbers come from the results store; rebuild with "
            f"`python experiments/zeroshot/run.py --limit {limit} --table`.",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=30, help="documents per task (0 = all)")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--store", type=Path, default=HERE / "runs.jsonl")
    parser.add_argument("--table", action="store_true", help="only rebuild the table")
    parser.add_argument("--out", type=Path, default=HERE / "results.md")
    args = parser.parse_args()
    limit = args.limit or None
    if not args.table:
        for quant in QUANTS:
            seconds = run_cli([*overrides(quant, limit, args.model), f"results_store={args.store}"])
            print(f"{quant}: {seconds:.0f} s wall", flush=True)
    records = {q: latest(args.store, q, limit, args.model) for q in QUANTS}
    text = table(records, limit, args.model)
    args.out.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
