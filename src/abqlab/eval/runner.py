"""Evaluate a (quantized) model as ``eval`` says: fast perplexity, then lm-eval if asked."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from abqlab.config import DataConfig, EvalConfig
from abqlab.data.sources import split_text, token_stream
from abqlab.eval.perplexity import perplexity
from abqlab.models.load import LoadedModel


def fast_perplexity(loaded: LoadedModel, eval_cfg: EvalConfig, data_cfg: DataConfig) -> float:
    """Perplexity of the held-out split with non-overlapping ``eval.seqlen`` windows."""
    stream = token_stream(loaded.tokenizer, split_text(data_cfg, "test"))
    bos_id = loaded.tokenizer.bos_token_id if loaded.add_bos else None
    return perplexity(
        loaded.model, stream, eval_cfg.seqlen, eval_cfg.max_windows, bos_id, eval_cfg.batch_size
    )


def evaluate(
    loaded: LoadedModel,
    eval_cfg: EvalConfig,
    datasets: DataConfig | Sequence[DataConfig],
    work_dir: Path,
) -> tuple[dict[str, float], dict[str, Any]]:
    """Metrics (flat keys such as ``ppl/wiki``, ``ppl/c4``: fast perplexity on each dataset) and
    extra info (versions, timings). lm-eval's text tasks read the first dataset."""
    datasets = [datasets] if isinstance(datasets, DataConfig) else list(datasets)
    data_cfg = datasets[0]
    metrics: dict[str, float] = {}
    info: dict[str, Any] = {}
    if eval_cfg.ppl:
        start = time.perf_counter()
        for dataset in datasets:
            metrics[f"ppl/{dataset.name}"] = fast_perplexity(loaded, eval_cfg, dataset)
        info["ppl_seconds"] = time.perf_counter() - start
    if eval_cfg.tasks or eval_cfg.lm_eval_ppl:
        from abqlab.eval.lmeval import run_lm_eval

        start = time.perf_counter()
        result = run_lm_eval(
            loaded.model, loaded.tokenizer, eval_cfg, data_cfg, loaded.add_bos, work_dir
        )
        metrics.update(result.metrics)
        info["lm_eval"] = {"versions": result.versions, "limit": eval_cfg.limit}
        info["lm_eval_seconds"] = time.perf_counter() - start
    return metrics, info
