"""Synthetic results-store records for the table and figure tests (a plain helper module)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

QUANTS = {
    "fp": {"name": "fp", "w_bits": 16, "a_bits": 16},
    "w4a4": {"name": "w4a4", "w_bits": 4, "a_bits": 4},
    "w6a6": {"name": "w6a6", "w_bits": 6, "a_bits": 6},
    "w2bb-a8": {"name": "w2bb-a8", "w_bits": 2, "w_bit_balance": True, "a_bits": 8},
    "w4a16g128": {"name": "w4a16g128", "w_bits": 4, "w_group": 128, "a_bits": 16},
}


def record(calib: str, quant: str, seed: int = 0, status: str = "ok", model: str = "m",
           epochs: int = 2, **metrics: float) -> dict[str, Any]:
    names = {"ppl_wiki": "ppl/wiki", "ppl_c4": "ppl/c4", "avg6": "acc/avg6", "size": "size/mb"}
    return {
        "config_hash": f"{calib}-{quant}-{seed}-{epochs}-{model}",
        "status": status,
        "config": {
            "model": {"name": model},
            "quant": {"w_group": -1, "k_bits": 16, "v_bits": 16, **QUANTS[quant]},
            "calib": {"name": calib, "seed": seed, "epochs": epochs},
            "seed": 0,
        },
        "metrics": {names[k]: v for k, v in metrics.items()},
    }


def curve_block(index: int, losses: list[float]) -> dict[str, Any]:
    return {
        "index": index,
        "loss": min(losses),
        "curve": {"epoch": list(range(-1, len(losses) - 1)), "eval_loss": losses,
                  "train_loss": [None, *losses[1:]]},
    }


def diagnostics(scale: float, tokens: int = 6, channels: int = 16) -> dict[str, Any]:
    attention = [[1.0 / (j + 1) if k <= j else 0.0 for k in range(tokens)] for j in range(tokens)]
    linear = "self_attn.q_proj"

    def side(factor: float) -> dict[str, Any]:
        return {
            "attention": attention,
            "act_absmax": {linear: [factor * (1 + (c % 5 == 0) * 20) for c in range(channels)]},
            "weight_absmax": {linear: [1.0 / factor] * channels},
        }

    return {"block": 1, "head": 0, "tokens": tokens, "linears": [linear],
            "float": side(1.0), "quant": side(scale)}


def write_store(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path
