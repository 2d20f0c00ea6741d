"""The allocation step of a run: sensitivities → allocator → ``quant.layer_bits``, recorded."""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from abqlab.alloc import ALLOCATORS
from abqlab.alloc.candidates import CandidateWeights
from abqlab.alloc.problem import (
    AllocContext,
    BudgetError,
    Problem,
    allocated,
    build_problem,
    candidate_specs,
)
from abqlab.alloc.sensitivity import (
    MEASURES,
    cache_key_parts,
    cached_sensitivities,
    joint_kl,
)
from abqlab.alloc.size import FLOAT_BITS
from abqlab.calib.checkpoint import fingerprint
from abqlab.calib.components.gptq_solver import GPTQConfig
from abqlab.config import DataConfig, QuantConfig
from abqlab.data.sources import calibration_windows
from abqlab.models.arch import get_module
from abqlab.models.load import LoadedModel

log = logging.getLogger(__name__)
ALLOCATION_FILE = "allocation.yaml"


def model_linears(loaded: LoadedModel, skip: list[str]) -> dict[str, tuple[int, int]]:
    """[out, in] of the allocated linears of the loaded (float) model, by full name."""
    blocks = get_module(loaded.model, loaded.arch.blocks)
    shapes = {
        f"{loaded.arch.blocks}.{i}.{path}": tuple(get_module(block, path).weight.shape)
        for i, block in enumerate(blocks)
        for path in loaded.arch.linears
    }
    return allocated(shapes, skip)


def float_bits_outside(loaded: LoadedModel, shapes: dict[str, tuple[int, int]]) -> int:
    """Bits of everything but the allocated weights (16 bits each; a tied tensor once)."""
    seen = {(p.data_ptr(), p.numel()) for p in loaded.model.parameters() if p.numel()}
    total = sum(n for _, n in seen)
    return FLOAT_BITS * (total - sum(r * c for r, c in shapes.values()))


def allocation_key(
    loaded: LoadedModel, quant: QuantConfig, data: DataConfig, names: list[str],
    specs: dict[int, Any], **extra: Any,
) -> str:
    """The digest of what an allocation cache entry depends on: model, linears, candidate specs,
    the budget's windows and data, plus ``extra`` (what kind of entry it is)."""
    b = quant.budget
    parts = {
        "specs": {k: asdict(s) for k, s in specs.items()}, "nsamples": b.nsamples,
        "seqlen": b.seqlen, "seed": b.seed, "data": asdict(data), **extra,
    }
    return fingerprint(*cache_key_parts(loaded, names, parts))


def sensitivities(
    loaded: LoadedModel, quant: QuantConfig, data: DataConfig, candidates: CandidateWeights,
    windows: Any,
) -> tuple[dict[str, dict[int, float]], bool]:
    """The configured sensitivity table, from the cache when one matches."""
    b = quant.budget
    source = {"weights": b.weights} if b.weights != "rtn" else {}  # rtn: old caches' keys
    names = candidates.names
    key = allocation_key(loaded, quant, data, names, candidates.specs, kind=b.sensitivity,
                         **source)
    return cached_sensitivities(
        b.sensitivity, key, b.cache_dir,
        lambda: MEASURES[b.sensitivity](loaded, names, candidates, windows),
    )


def candidates_file(
    loaded: LoadedModel, quant: QuantConfig, data: DataConfig, names: list[str],
    specs: dict[int, Any],
) -> Path | None:
    """Where solved non-RTN candidates are cached (None: RTN ones, or no cache_dir)."""
    b = quant.budget
    if b.weights == "rtn" or not b.cache_dir:
        return None
    key = allocation_key(loaded, quant, data, names, specs, kind=f"{b.weights}-candidates",
                         solver=asdict(GPTQConfig()))
    return Path(b.cache_dir).expanduser() / f"{b.weights}-candidates-{key}.pt"


def summarize(problem: Problem, bits: dict[str, int], other_bits: int) -> dict[str, Any]:
    """What is recorded: the widths, their size, the predicted loss, the best uniform width."""
    used = problem.total_cost(bits)
    budget = problem.budget
    fits = [b for b in problem.candidates if problem.total_cost(problem.uniform(b)) <= budget]
    best = max(fits) if fits else None
    return {
        "budget_bytes": (problem.budget + other_bits) // 8,
        "budget_avg_bits": problem.budget / problem.weights,
        "bytes": -(-(used + other_bits) // 8),
        "avg_bits": used / problem.weights,
        "predicted_loss": problem.total_loss(bits),
        "uniform_bits": best,  # the widest uniform allocation within the same budget
        "uniform_predicted_loss": (
            None if best is None else problem.total_loss(problem.uniform(best))
        ),
        "histogram": {str(k): v for k, v in sorted(Counter(bits.values()).items())},
        "layer_bits": bits,
    }


def write_allocation(quant: QuantConfig, bits: dict[str, int], run_dir: Path) -> Path:
    """``<run_dir>/allocation.yaml``: a quant config with these widths (copy to conf/quant/)."""
    settings = asdict(dataclasses.replace(quant, layer_bits=bits, name=f"{quant.name}-alloc"))
    settings.pop("budget")
    path = run_dir / ALLOCATION_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    node = OmegaConf.create({"defaults": ["schema", "_self_"], **settings})
    path.write_text(OmegaConf.to_yaml(node))
    return path


def allocate_bits(
    loaded: LoadedModel, quant: QuantConfig, data: DataConfig, run_dir: Path
) -> tuple[QuantConfig, dict[str, Any]]:
    """Choose ``layer_bits`` under ``quant.budget``; returns the quant config that carries them
    and the record's ``allocation`` entry. Raises BudgetError when the budget cannot be met."""
    b = quant.budget
    shapes = model_linears(loaded, list(quant.skip))
    windows = calibration_windows(
        loaded.tokenizer, data, b.nsamples, b.seqlen, b.seed, loaded.add_bos
    )
    specs = candidate_specs(quant, list(b.candidates))
    cache_file = candidates_file(loaded, quant, data, list(shapes), specs)
    candidates = CandidateWeights(loaded.model, list(shapes), specs, b.weights, windows,
                                  loaded.device, cache_file)
    if b.weights != "rtn":
        candidates.prepare()
    table, cached = sensitivities(loaded, quant, data, candidates, windows)
    other = float_bits_outside(loaded, shapes)
    problem = build_problem(quant, shapes, table, other)
    context = AllocContext(loaded, windows, candidates, b)
    bits = ALLOCATORS.get(b.allocator)(problem, context)
    if problem.total_cost(bits) > problem.budget:
        raise BudgetError(f"allocator {b.allocator} exceeded the budget: "
                          f"{problem.total_cost(bits)} > {problem.budget} bits")
    summary = {"allocator": b.allocator, "sensitivity": b.sensitivity, "weights": b.weights,
               "cached": cached, **summarize(problem, bits, other)}
    if candidates.cache_file is not None:
        summary["candidates_cached"] = candidates.loaded_from_file
    if context.curve:
        summary["curve"] = context.curve
    # measured with every linear at its candidate weight at once (``rtn_kl`` with RTN ones)
    summary[f"{b.weights}_kl"] = joint_kl(loaded, bits, candidates, windows)
    if summary["uniform_bits"] is not None:
        uniform = problem.uniform(summary["uniform_bits"])
        summary[f"uniform_{b.weights}_kl"] = joint_kl(loaded, uniform, candidates, windows)
    summary["file"] = str(write_allocation(quant, bits, run_dir))
    log.info("allocation: %.3f bits per weight, %s", summary["avg_bits"], summary["histogram"])
    return dataclasses.replace(quant, layer_bits=bits), summary
