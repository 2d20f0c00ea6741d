"""Token windows: calibration samples and the perplexity protocol's non-overlapping windows."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from abqlab.config import DataConfig
from abqlab.data import sources
from abqlab.eval.perplexity import eval_windows, perplexity, window_nll
from abqlab.models.load import LoadedModel

BOS = 1


def is_substream(window: torch.Tensor, stream: torch.Tensor) -> bool:
    n = window.numel()
    return any(torch.equal(stream[s : s + n], window) for s in range(stream.numel() - n + 1))


@pytest.fixture
def small_train(monkeypatch: pytest.MonkeyPatch) -> str:
    text = "\n\n".join(sources.articles(DataConfig(max_test_docs=20), "test"))
    monkeypatch.setattr(sources, "split_text", lambda cfg, split: text)
    return text


def test_token_stream_has_no_special_tokens(smollm2_2layer: LoadedModel) -> None:
    tok = smollm2_2layer.tokenizer
    stream = sources.token_stream(tok, "Paris is the capital of France.")
    assert stream.dtype == torch.long and stream.dim() == 1
    assert tok.bos_token_id not in stream.tolist()
    assert tok.decode(stream) == "Paris is the capital of France."


@pytest.mark.parametrize("add_bos", [False, True])
def test_calibration_windows(smollm2_2layer: LoadedModel, small_train: str, add_bos: bool) -> None:
    tok = smollm2_2layer.tokenizer
    stream = sources.token_stream(tok, small_train)
    windows = sources.calibration_windows(tok, DataConfig(), 4, 32, seed=2, add_bos=add_bos)
    assert windows.shape == (4, 32) and windows.dtype == torch.long
    again = sources.calibration_windows(tok, DataConfig(), 4, 32, seed=2, add_bos=add_bos)
    other = sources.calibration_windows(tok, DataConfig(), 4, 32, seed=3, add_bos=add_bos)
    assert torch.equal(windows, again) and not torch.equal(windows, other)
    body = windows[:, 1:] if add_bos else windows
    if add_bos:
        assert torch.all(windows[:, 0] == tok.bos_token_id)
    for row in body:
        assert is_substream(row, stream)


def test_calibration_windows_need_enough_text(
    smollm2_2layer: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sources, "split_text", lambda cfg, split: "too short")
    with pytest.raises(ValueError, match="fewer than seqlen 64"):
        sources.calibration_windows(smollm2_2layer.tokenizer, DataConfig(), 2, 64, 0, False)


def test_eval_windows_without_bos_are_consecutive_chunks() -> None:
    stream = torch.arange(10, 33)  # 23 tokens
    windows = eval_windows(stream, 5, None)
    assert torch.equal(windows, torch.arange(10, 30).reshape(4, 5))


def test_eval_windows_with_bos_prepend_it_and_keep_seqlen() -> None:
    stream = torch.arange(10, 33)
    windows = eval_windows(stream, 5, BOS)
    assert windows.shape == (5, 5)
    assert torch.all(windows[:, 0] == BOS)
    assert torch.equal(windows[:, 1:].reshape(-1), torch.arange(10, 30))


def test_eval_windows_too_short() -> None:
    with pytest.raises(ValueError, match="fewer than one window of 8"):
        eval_windows(torch.arange(5), 8, None)


class Uniform(nn.Module):
    """Logits all equal: every token has probability 1 / vocab."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab = vocab
        self.anchor = nn.Parameter(torch.zeros(1))

    def forward(self, ids: torch.Tensor) -> object:
        logits = torch.zeros(*ids.shape, self.vocab) + self.anchor
        return type("Out", (), {"logits": logits})()


def test_uniform_model_has_perplexity_vocab_and_bos_is_never_a_target() -> None:
    stream = torch.randint(2, 50, (200,))
    assert perplexity(Uniform(50), stream, 16, max_windows=5) == pytest.approx(50.0, rel=1e-5)
    total, count = window_nll(Uniform(50), eval_windows(stream, 16, BOS)[:5], batch_size=2)
    assert count == 5 * 15  # every position after the first (BOS or not) is a target
    assert total == pytest.approx(count * math.log(50), rel=1e-5)


def test_max_windows_limits_the_count() -> None:
    stream = torch.randint(2, 50, (200,))
    windows = eval_windows(stream, 16, None)
    assert windows.shape[0] == 12
    _, count = window_nll(Uniform(50), windows[:3], batch_size=4)
    assert count == 3 * 15
