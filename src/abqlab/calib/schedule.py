"""Learning-rate schedules for block calibration, as multipliers of each group's lr per step."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

SCHEDULES = ("constant", "cosine")


def lr_lambda(calib: Any, total_steps: int) -> Callable[[int], float]:
    """Linear warm-up over ``calib.warmup`` of the steps, then constant or cosine decay to 0."""
    if calib.lr_schedule not in SCHEDULES:
        raise ValueError(f"calib.lr_schedule={calib.lr_schedule}: allowed: {', '.join(SCHEDULES)}")
    warmup = int(round(calib.warmup * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if calib.lr_schedule == "constant":
            return 1.0
        progress = (step - warmup) / max(total_steps - warmup, 1)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return factor
