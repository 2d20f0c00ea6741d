"""GPTQ candidate weights for the allocation: on the grid, better than RTN where GPTQ should be,
and an allocation measured on them keeps its budget and beats uniform on what it measures."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from abqlab.alloc.candidates import CandidateWeights
from abqlab.alloc.problem import candidate_specs
from abqlab.alloc.run import allocate_bits, model_linears
from abqlab.config import BudgetConfig, DataConfig, QuantConfig
from abqlab.data.sources import calibration_windows
from abqlab.models.load import LoadedModel


def output_error(delta: torch.Tensor, hessian: torch.Tensor) -> float:
    """The layer's output error tr(ΔW H ΔWᵀ) that GPTQ minimises."""
    return float(((delta @ hessian) * delta).sum())


def test_gptq_candidates_sit_on_the_grid_and_beat_rtn(smollm2_2layer: LoadedModel) -> None:
    quant = QuantConfig(name="w3g64", w_bits=3, w_group=64)
    specs = candidate_specs(quant, [2, 3])
    names = list(model_linears(smollm2_2layer, []))
    windows = calibration_windows(smollm2_2layer.tokenizer, DataConfig(), 4, 128, 0,
                                  smollm2_2layer.add_bos)
    gptq = CandidateWeights(smollm2_2layer.model, names, specs, "gptq", windows)
    rtn = CandidateWeights(smollm2_2layer.model, names, specs, "rtn")
    gptq.prepare()
    assert len(gptq.cache) == 2 * len(names) == 28 and gptq.hessians is not None
    for bits in (2, 3):
        totals = {"gptq": 0.0, "rtn": 0.0}
        for name in names:
            weight = smollm2_2layer.model.get_submodule(name).weight.detach()
            hessian = gptq.hessians[name]
            q = gptq.weight(name, bits)
            groups = q.reshape(q.shape[0], -1, 64)
            levels = max(len(torch.unique(g)) for g in groups[:8].reshape(-1, 64))
            assert levels <= 2**bits  # one asymmetric grid per row and group of 64
            totals["gptq"] += output_error(q - weight, hessian)
            totals["rtn"] += output_error(rtn.weight(name, bits) - weight, hessian)
        assert totals["gptq"] < 0.8 * totals["rtn"], (bits, totals)


def test_bad_source_is_refused(smollm2_2layer: LoadedModel) -> None:
    with pytest.raises(ValueError, match="allowed: rtn, gptq"):
        CandidateWeights(smollm2_2layer.model, [], {}, "awq")
    with pytest.raises(ValueError, match="calibration windows"):
        CandidateWeights(smollm2_2layer.model, [], {}, "gptq")


def test_search_on_gptq_candidates_keeps_budget_and_beats_uniform(
    smollm2_2layer: LoadedModel, tmp_path: Path
) -> None:
    budget = BudgetConfig(avg_bits=3.5, candidates=[2, 3, 4], nsamples=2, seqlen=64,
                          allocator="search", steps=4, weights="gptq",
                          cache_dir=str(tmp_path / "cache"))
    quant = QuantConfig(name="w3g64", w_bits=3, w_group=64, budget=budget)
    _, summary = allocate_bits(smollm2_2layer, quant, DataConfig(), tmp_path / "run")
    assert summary["weights"] == "gptq" and summary["bytes"] <= summary["budget_bytes"]
    assert summary["gptq_kl"] <= summary["uniform_gptq_kl"] * (1 + 1e-6)


def test_gptq_candidates_are_cached_and_reread(smollm2_2layer: LoadedModel, tmp_path: Path) -> None:
    quant = QuantConfig(name="w3g64", w_bits=3, w_group=64)
    specs = candidate_specs(quant, [2, 3])
    names = list(model_linears(smollm2_2layer, []))[:3]
    windows = calibration_windows(smollm2_2layer.tokenizer, DataConfig(), 2, 64, 0,
                                  smollm2_2layer.add_bos)
    path = tmp_path / "candidates.pt"
    first = CandidateWeights(smollm2_2layer.model, names, specs, "gptq", windows,
                             cache_file=path)
    first.prepare()
    assert path.is_file() and not first.loaded_from_file
    again = CandidateWeights(smollm2_2layer.model, names, specs, "gptq", windows,
                             cache_file=path)
    again.prepare()
    assert again.loaded_from_file and again.hessians is None  # nothing re-solved
    for key, weight in first.cache.items():
        assert torch.equal(again.cache[key], weight)
