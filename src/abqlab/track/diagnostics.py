"""Small recordings for figures, taken in the run itself (the store alone rebuilds the figures).

Before calibration (float model) and after it (the quantized model), on one short window of the
first evaluation dataset: the attention probabilities of one head of one block, and per input
channel the maximum |activation| entering, and the maximum |weight| of, some linears of that
block (by default its first, q_proj for LLaMA-like models: the outlier picture of smoothing).
Also the model's storage size at its bit widths (``size/model_mb``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from abqlab.config import DataConfig, DiagnosticsConfig
from abqlab.data.sources import split_text, token_stream
from abqlab.models.arch import blocks_of, get_module
from abqlab.models.load import LoadedModel
from abqlab.quant.apply import use_abqlab_attention
from abqlab.quant.fake_linear import FakeQuantLinear

DIGITS = 3


def rounded(values: torch.Tensor) -> list:
    """A tensor as nested lists of floats with ``DIGITS`` significant digits (small JSON)."""
    return [float(f"{v:.{DIGITS}g}") for v in values.tolist()] if values.dim() == 1 else [
        rounded(row) for row in values
    ]


def probe_window(loaded: LoadedModel, data: DataConfig, tokens: int) -> torch.Tensor:
    """The first ``tokens`` tokens of the dataset's test split, [1, tokens] (BOS first if used)."""
    stream = token_stream(loaded.tokenizer, split_text(data, "test"))
    if loaded.add_bos:
        stream = torch.cat([torch.tensor([loaded.tokenizer.bos_token_id]), stream])
    return stream[:tokens].unsqueeze(0)


def weight_of(linear: nn.Module) -> torch.Tensor:
    """The float weight a linear multiplies by (after calibration transforms, before rounding)."""
    if isinstance(linear, FakeQuantLinear):
        return linear.transformed()[0]
    return linear.weight


class Probe:
    """``before()`` on the float model, ``after()`` on the quantized one → a JSON-able dict."""

    def __init__(self, loaded: LoadedModel, cfg: DiagnosticsConfig, data: DataConfig) -> None:
        self.loaded, self.cfg = loaded, cfg
        n_blocks = len(blocks_of(loaded.model, loaded.arch))
        self.block = min(cfg.block, n_blocks - 1) if cfg.block >= 0 else n_blocks + cfg.block
        arch = loaded.arch
        self.linears = tuple(cfg.linears) or (arch.linears[0],)
        self.window = probe_window(loaded, data, cfg.tokens)
        self.states: dict[str, dict[str, Any]] = {}

    @torch.no_grad()
    def capture(self) -> dict[str, Any]:
        model, arch = self.loaded.model, self.loaded.arch
        use_abqlab_attention(model)
        block = blocks_of(model, arch)[self.block]
        attention = get_module(block, arch.attention)
        inputs: dict[str, torch.Tensor] = {}

        def hook_for(path: str) -> Any:
            def hook(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
                inputs[path] = args[0].detach().abs().reshape(-1, args[0].shape[-1]).amax(0)

            return hook

        handles = [
            get_module(block, p).register_forward_pre_hook(hook_for(p)) for p in self.linears
        ]
        attention.abqlab_record = []
        try:
            model(self.window.to(self.loaded.device), use_cache=False)
            maps = attention.abqlab_record
        finally:
            attention.abqlab_record = None
            for handle in handles:
                handle.remove()
        head = min(self.cfg.head, maps[0].shape[1] - 1)
        return {
            "attention": rounded(maps[0][0, head].float().cpu()),
            "head": head,
            "act_absmax": {p: rounded(inputs[p].float().cpu()) for p in self.linears},
            "weight_absmax": {
                p: rounded(weight_of(get_module(block, p)).detach().abs().amax(0).float().cpu())
                for p in self.linears
            },
        }

    def before(self) -> None:
        self.states["float"] = self.capture()

    def after(self) -> dict[str, Any]:
        self.states["quant"] = self.capture()
        return {
            "block": self.block,
            "head": self.states["float"]["head"],
            "tokens": int(self.window.shape[1]),
            "linears": list(self.linears),
            **{kind: self.states[kind] for kind in ("float", "quant")},
        }
