"""Calibrator test fixtures: tokenization memo (the embedded train split is large), run helpers."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import abqlab.data.sources as sources
from abqlab.config import ModelConfig
from abqlab.models.load import LoadedModel

_TOKENS: dict[tuple[str, str], torch.Tensor] = {}
_token_stream = sources.token_stream


def _memo_token_stream(tokenizer: Any, text: str) -> torch.Tensor:
    key = (
        str(getattr(tokenizer, "name_or_path", id(tokenizer))),
        hashlib.sha1(text.encode()).hexdigest(),
    )
    if key not in _TOKENS:
        _TOKENS[key] = _token_stream(tokenizer, text)
    return _TOKENS[key].clone()


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread: on 2 cores shared by several jobs, OpenMP's spinning workers make a
    calibration step ~30x slower than a single thread (measured: 26 s vs 0.7 s per block)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def memo_tokenization(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tokenize each split once per session (same ids; saves ~10 s per calibration on CPU)."""
    monkeypatch.setattr(sources, "token_stream", _memo_token_stream)
    yield


@pytest.fixture
def run_pipeline(
    tmp_path: Path,
    composer: Callable[..., Any],
    smollm2_2layer: LoadedModel,
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., dict[str, Any]]:
    """Compose overrides, validate, run through ``abqlab.pipeline.run`` in its own run dir.

    Loading reads the whole SmolLM2 file (seconds on a busy CPU), so each run gets a private
    copy of the session's 2-layer model instead; everything after loading is the real pipeline.
    """
    import abqlab.pipeline as pipeline
    from abqlab.validate import check_run

    def load_copy(cfg: ModelConfig, seed: int = 0) -> LoadedModel:
        assert (cfg.source, cfg.num_hidden_layers, cfg.dtype) == ("embedded", 2, "float32"), cfg
        return dataclasses.replace(smollm2_2layer, model=copy.deepcopy(smollm2_2layer.model))

    monkeypatch.setattr(pipeline, "load_model", load_copy)
    run = pipeline.run
    counter = iter(range(1000))

    def go(*overrides: str, name: str | None = None) -> dict[str, Any]:
        cfg = composer(
            "logger=none",
            "model=smollm2-2layer",
            "model.device=cpu",
            "eval.max_windows=1",
            "eval.seqlen=64",
            f"results_store={tmp_path / 'runs.jsonl'}",
            *overrides,
        )
        check_run(cfg)
        run_dir = tmp_path / (name or f"run{next(counter)}")
        run_dir.mkdir(parents=True)
        record = run(cfg, run_dir, tmp_path / "runs.jsonl")
        record["_run_dir"] = run_dir
        return record

    return go
