"""The candidate weights the allocation measures: every allocated linear at every candidate width.

``quant.budget.weights`` picks how a candidate is quantized:

* ``rtn``: round-to-nearest on the run's grid (the default);
* ``gptq``: GPTQ's column solver with ``calib=gptq``'s defaults (act-order, static groups, MSE
  grid) on each linear's input Hessian, recorded from the float model on the allocation's
  calibration windows. Each linear is solved alone (float inputs), not in sequence as the
  calibrator then does, so these are close to, not equal to, the weights ``calib=gptq`` will
  produce. GPTQ repairs low widths far more than RTN does (it cuts 2-bit errors most), so an
  allocation measured on RTN candidates misjudges what GPTQ will make of each width; EvoPress
  (Sieberling et al. 2024) searches on such a database of GPTQ-compressed layers.

Solved candidates are kept in memory (fp32); GPTQ ones also in ``cache_file`` when given (about
1.3 GB for SmolLM2 at three widths), so runs that allocate on the same windows share them.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from abqlab.calib.components.gptq import hessian_hooks
from abqlab.calib.components.gptq_solver import GPTQConfig, gptq_quantize
from abqlab.models.arch import get_module
from abqlab.quant.fake_linear import FakeQuantLinear
from abqlab.quant.spec import QuantSpec

WEIGHT_SOURCES = ("rtn", "gptq")
CHUNK = 4  # windows per forward while Hessians are recorded


def rtn_weight(linear: nn.Linear, spec: QuantSpec) -> torch.Tensor:
    """``linear``'s weight round-to-nearest quantized with ``spec`` (dequantized, detached)."""
    with torch.no_grad():
        return FakeQuantLinear(linear, spec, None).quantized_weight(linear.weight).detach()


@torch.no_grad()
def input_hessians(
    model: nn.Module, names: Iterable[str], windows: torch.Tensor, device: torch.device
) -> dict[str, torch.Tensor]:
    """H = 2/n Σ xxᵀ of each named linear's input over every token of ``windows`` (float model)."""
    linears = {n: get_module(model, n) for n in names}
    with hessian_hooks(linears) as hessians:
        for chunk in tqdm(windows.split(CHUNK), desc="allocate: input Hessians", unit="chunk"):
            model(chunk.to(device), use_cache=False)
    return hessians


class CandidateWeights:
    """``weight(name, bits)``: linear ``name`` quantized at ``bits`` by the chosen source."""

    def __init__(
        self,
        model: nn.Module,
        names: list[str],
        specs: dict[int, QuantSpec],
        source: str = "rtn",
        windows: torch.Tensor | None = None,
        device: torch.device | str = "cpu",
        cache_file: Path | None = None,
    ) -> None:
        if source not in WEIGHT_SOURCES:
            raise ValueError(f"quant.budget.weights={source}: allowed: {', '.join(WEIGHT_SOURCES)}")
        if source == "gptq" and windows is None:
            raise ValueError("GPTQ candidates need calibration windows for their Hessians")
        self.model, self.names, self.specs, self.source = model, list(names), specs, source
        self.windows, self.device = windows, torch.device(device)
        self.hessians: dict[str, torch.Tensor] | None = None
        self.cache: dict[tuple[str, int], torch.Tensor] = {}
        self.cache_file = cache_file
        self.loaded_from_file = False

    def weight(self, name: str, bits: int) -> torch.Tensor:
        if (name, bits) not in self.cache:
            self.cache[name, bits] = self._solve(name, bits)
        return self.cache[name, bits]

    def prepare(self) -> None:
        """Solve every candidate now (one progress bar), or read them from ``cache_file``."""
        wanted = [(n, b) for n in self.names for b in self.specs]
        if self.cache_file is not None and self.cache_file.is_file():
            saved = torch.load(self.cache_file, map_location=self.device, weights_only=True)
            if all(f"{n}@{b}" in saved for n, b in wanted):
                self.cache.update({(n, b): saved[f"{n}@{b}"] for n, b in wanted})
                self.loaded_from_file = True
                return
        todo = [key for key in wanted if key not in self.cache]
        for name, bits in tqdm(todo, desc=f"allocate: {self.source} candidates", unit="weight",
                               disable=self.source == "rtn"):
            self.weight(name, bits)
        if self.cache_file is not None:
            self.cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.cache_file.with_name(self.cache_file.name + ".tmp")
            torch.save({f"{n}@{b}": self.cache[n, b] for n, b in wanted}, tmp)
            tmp.replace(self.cache_file)

    def _solve(self, name: str, bits: int) -> torch.Tensor:
        linear = get_module(self.model, name)
        if self.source == "rtn":
            return rtn_weight(linear, self.specs[bits])
        if self.hessians is None:  # one pass of the float model for every allocated linear
            self.hessians = input_hessians(self.model, self.names, self.windows, self.device)
        result = gptq_quantize(linear.weight, self.hessians[name], self.specs[bits], GPTQConfig())
        return result.weight.to(linear.weight.dtype)
