"""Per-linear sensitivity to its weight bit width, from calibration windows, cached per model.

``kl`` (measured): the mean per-token KL(float ‖ quantized) of the next-token distribution when
that one linear is quantized at b bits and every other weight stays float; the model runs
from the linear's block on, from the float hidden states cached at each block's input.
``fisher`` (estimated): ½ Σ F ⊙ (Q_b(W) − W)², F the diagonal empirical Fisher of the
next-token loss (squared per-window gradients), one backward pass per window.
Q_b(W) is the candidate weight of ``candidates.CandidateWeights`` (RTN or GPTQ).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from abqlab.alloc.candidates import CandidateWeights
from abqlab.calib.capture import capture_block_inputs
from abqlab.calib.train import run_block
from abqlab.models.arch import blocks_of, get_module
from abqlab.models.load import LoadedModel

SENSITIVITIES = ("kl", "fisher")
CHUNK = 4  # windows per forward where vocabulary-wide log-probabilities are kept
Table = dict[str, dict[int, float]]  # linear name → bits → loss increase


def head_logprobs(loaded: LoadedModel, hidden: torch.Tensor) -> torch.Tensor:
    """Next-token log-probabilities from the last block's output."""
    norm = get_module(loaded.model, loaded.arch.final_norm)
    head = get_module(loaded.model, loaded.arch.lm_head)
    return F.log_softmax(head(norm(hidden)).float(), dim=-1)


def mean_kl(reference: torch.Tensor, logprobs: torch.Tensor) -> float:
    """Mean per-token KL(reference ‖ logprobs), both log-probabilities [..., vocab]."""
    kl = (reference.exp() * (reference - logprobs)).sum(-1)
    return float(kl.mean())


class TailRunner:
    """Float hidden states at every block's input, and the model's tail from any block."""

    @torch.no_grad()
    def __init__(self, loaded: LoadedModel, windows: torch.Tensor) -> None:
        self.loaded = loaded
        self.blocks = blocks_of(loaded.model, loaded.arch)
        x, self.kwargs = capture_block_inputs(loaded.model, loaded.arch, windows, 1, loaded.device)
        self.inputs = [x]
        for block in self.blocks:
            self.inputs.append(run_block(block, self.inputs[-1], self.kwargs, 1))
        self.reference = head_logprobs(loaded, self.inputs[-1])

    @torch.no_grad()
    def kl_from(self, start: int) -> float:
        """KL to the float model when blocks from ``start`` on run as they are now."""
        hidden = self.inputs[start]
        for block in self.blocks[start:]:
            hidden = run_block(block, hidden, self.kwargs, 1)
        return mean_kl(self.reference, head_logprobs(self.loaded, hidden))


def measure_kl(
    loaded: LoadedModel, names: list[str], weights: CandidateWeights, windows: torch.Tensor
) -> Table:
    """Measured sensitivity: KL with one linear at b bits, every other weight in float."""
    runner = TailRunner(loaded, windows)
    prefix = loaded.arch.blocks + "."
    table: Table = {}
    for name in tqdm(names, desc="sensitivity (kl)", unit="linear"):
        linear = get_module(loaded.model, name)
        start = int(name[len(prefix):].split(".")[0])
        original = linear.weight.data.clone()
        table[name] = {}
        for bits in weights.specs:
            linear.weight.data.copy_(weights.weight(name, bits))
            table[name][bits] = runner.kl_from(start)
            linear.weight.data.copy_(original)
    return table


def fisher_diagonal(loaded: LoadedModel, names: list[str], windows: torch.Tensor) -> dict:
    """Mean squared per-window gradient of the next-token loss for each named weight."""
    model = loaded.model
    weights = {name: get_module(model, name).weight for name in names}
    flags = {p: p.requires_grad for p in model.parameters()}
    for p in model.parameters():
        p.requires_grad_(False)
    for w in weights.values():
        w.requires_grad_(True)
    fisher = {name: torch.zeros_like(w) for name, w in weights.items()}
    try:
        for window in tqdm(windows, desc="sensitivity (fisher)", unit="window"):
            ids = window.unsqueeze(0).to(loaded.device)
            logits = model(ids, use_cache=False).logits.float()
            loss = F.cross_entropy(logits[0, :-1], ids[0, 1:])
            grads = torch.autograd.grad(loss, list(weights.values()))
            for name, grad in zip(weights, grads, strict=True):
                fisher[name] += grad.detach() ** 2
    finally:
        for p, flag in flags.items():
            p.requires_grad_(flag)
    return {name: f / len(windows) for name, f in fisher.items()}


def estimate_fisher(
    loaded: LoadedModel, names: list[str], weights: CandidateWeights, windows: torch.Tensor
) -> Table:
    """Estimated sensitivity: ½ Σ F ⊙ ΔW² per linear and width."""
    fisher = fisher_diagonal(loaded, names, windows)
    table: Table = {}
    for name in names:
        linear = get_module(loaded.model, name)
        error = {b: weights.weight(name, b) - linear.weight.detach() for b in weights.specs}
        table[name] = {b: float(0.5 * (fisher[name] * e**2).sum()) for b, e in error.items()}
    return table


def swap_weights(model: nn.Module, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Put ``weights`` into the named linears; returns the weights they held."""
    previous = {}
    for name, weight in weights.items():
        linear = get_module(model, name)
        previous[name] = linear.weight.data
        linear.weight.data = weight
    return previous


@torch.no_grad()
def joint_kl(
    loaded: LoadedModel, bits: dict[str, int], weights: CandidateWeights, windows: torch.Tensor
) -> float:
    """KL to the float model with every named linear at its candidate weight at once
    (``CHUNK`` windows per forward, so the vocabulary-wide log-probabilities stay small)."""
    model = loaded.model
    quantized = {n: weights.weight(n, b) for n, b in bits.items()}
    total = 0.0
    for chunk in windows.split(CHUNK):
        ids = chunk.to(loaded.device)
        reference = F.log_softmax(model(ids, use_cache=False).logits.float(), dim=-1)
        originals = swap_weights(model, quantized)
        try:
            logprobs = F.log_softmax(model(ids, use_cache=False).logits.float(), dim=-1)
        finally:
            swap_weights(model, originals)
        total += mean_kl(reference, logprobs) * len(chunk)
    return total / len(windows)


MEASURES: dict[str, Callable[..., Table]] = {"kl": measure_kl, "fisher": estimate_fisher}


def cached_sensitivities(
    kind: str, key: str, cache_dir: str | None, compute: Callable[[], Table]
) -> tuple[Table, bool]:
    """``compute()``, or the cached table ``<cache_dir>/<kind>-<key>.json``; (table, was cached)."""
    path = Path(cache_dir).expanduser() / f"{kind}-{key}.json" if cache_dir else None
    if path is not None and path.is_file():
        saved = json.loads(path.read_text())
        return {n: {int(b): v for b, v in row.items()} for n, row in saved.items()}, True
    table = compute()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(table, indent=1))
        tmp.replace(path)
    return table, False


def weights_digest(model: nn.Module, names: list[str]) -> list[float]:
    """A cheap fingerprint of the weights being allocated (sums of a few of them)."""
    picks = names[:: max(len(names) // 4, 1)]
    return [round(float(get_module(model, n).weight.double().sum()), 6) for n in picks]


def cache_key_parts(loaded: LoadedModel, names: list[str], extra: dict[str, Any]) -> list[Any]:
    """What a sensitivity table depends on (hashed into its cache file name)."""
    return [loaded.model.config.to_dict(), names, weights_digest(loaded.model, names), extra]
