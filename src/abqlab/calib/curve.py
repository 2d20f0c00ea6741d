"""Per-block loss curve: evaluated losses per epoch, the best parameters seen, the selection."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

SELECTIONS = ("best", "last")


class BlockCurve:
    """Epoch −1 is the initialisation. Keeps a copy of the best-scoring parameters."""

    def __init__(self, initial: dict[str, float], params: list[nn.Parameter]) -> None:
        self.epochs: list[int] = [-1]
        self.train: list[dict[str, float]] = [{}]
        self.eval: list[dict[str, float]] = [initial]
        self.best_epoch = -1
        self.best_values = [p.detach().clone() for p in params]

    @property
    def best_loss(self) -> float:
        return self.eval[self.epochs.index(self.best_epoch)]["loss"]

    def add(
        self,
        epoch: int,
        train: dict[str, float],
        evaluated: dict[str, float],
        params: list[nn.Parameter],
    ) -> None:
        self.epochs.append(epoch)
        self.train.append(train)
        self.eval.append(evaluated)
        if evaluated["loss"] < self.best_loss:
            self.best_epoch = epoch
            self.best_values = [p.detach().clone() for p in params]

    def stale_epochs(self) -> int:
        """Epochs since the best one (for early stopping)."""
        return self.epochs[-1] - self.best_epoch

    @torch.no_grad()
    def restore_best(self, params: list[nn.Parameter]) -> None:
        for param, value in zip(params, self.best_values, strict=True):
            param.copy_(value)

    def summary(self, select: str) -> dict[str, Any]:
        """The kept epoch's evaluated losses, flat, plus the whole curve."""
        kept = self.best_epoch if select == "best" else self.epochs[-1]
        names = list(self.eval[0])
        return {
            **self.eval[self.epochs.index(kept)],
            "init_loss": self.eval[0]["loss"],
            "kept_epoch": kept,
            "best_epoch": self.best_epoch,
            "epochs_run": len(self.epochs) - 1,
            "curve": {
                "epoch": list(self.epochs),
                **{f"eval_{n}": [e[n] for e in self.eval] for n in names},
                **{f"train_{n}": [t.get(n) for t in self.train] for n in names},
            },
        }
