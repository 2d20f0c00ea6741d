"""Did the per-block calibration losses converge? Summarises the curves in a results store.

``python experiments/abq_ablation/convergence.py experiments/abq_ablation/runs.jsonl``: per bit
setting, over every block of every ok run, the share of blocks whose best epoch is the
initialisation, the gain of the last epoch relative to the loss at initialisation (median and
90th percentile), and how much of each block's total gain the first two epochs reached.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

from abqlab.track.store import read_records


def block_rows(record: dict[str, Any]) -> list[list[float]]:
    """Each calibrated block's eval-loss curve (epoch −1 first)."""
    blocks = record.get("calibration", {}).get("blocks", [])
    return [b["curve"]["eval_loss"] for b in blocks if b.get("curve", {}).get("eval_loss")]


def summary(curves: list[list[float]]) -> dict[str, float]:
    last = [(c[-2] - c[-1]) / c[0] for c in curves if len(c) >= 3]
    total = [c[0] - min(c) for c in curves]
    early = [c[0] - min(c[1:3]) for c in curves if len(c) >= 3]
    return {
        "blocks": len(curves),
        "best at init": sum(min(c[1:], default=c[0]) >= c[0] for c in curves),
        "last-epoch gain, median": statistics.median(last),
        "last-epoch gain, p90": statistics.quantiles(last, n=10)[-1],
        "share of the gain by epoch 1": sum(early) / max(sum(total), 1e-12),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", type=Path)
    args = parser.parse_args()
    by_setting: dict[str, list[list[float]]] = {}
    for record in read_records(args.store):
        if record.get("status") == "ok":
            name = record["config"]["quant"]["name"]
            by_setting.setdefault(name, []).extend(block_rows(record))
    print("| setting | blocks | best at init | last-epoch gain (median / p90, of init loss) |"
          " share of the gain by epoch 1 |")
    print("|---|---|---|---|---|")
    for name, curves in sorted(by_setting.items()):
        s = summary(curves)
        print(f"| {name} | {s['blocks']} | {s['best at init']} | "
              f"{s['last-epoch gain, median']:.2%} / {s['last-epoch gain, p90']:.2%} | "
              f"{s['share of the gain by epoch 1']:.1%} |")


if __name__ == "__main__":
    main()
