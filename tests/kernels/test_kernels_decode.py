"""The decode step that experiments/kernels/e2e_decode.py captures as one CUDA graph, run on the
CPU with a tiny LLaMA: a static KV cache decode equals the full-sequence forward, with torch
linears and with QuantLinear (reference ops) in every decoder layer."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")
REPO = Path(__file__).resolve().parents[2]


def _e2e():
    spec = importlib.util.spec_from_file_location(
        "abq_e2e_decode", REPO / "experiments" / "kernels" / "e2e_decode.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("config", [None, (4, 8, "auto"), (4, 16, "auto")])
def test_static_cache_step_matches_full_forward(config: tuple[int, int, str] | None) -> None:
    e2e = _e2e()
    torch.manual_seed(0)
    model = e2e.build_model(2, device="cpu", hidden=64, inter=128, heads=4, vocab=96)
    if config is not None:
        e2e.quantize(model, *config)
    gen = torch.Generator().manual_seed(1)
    step, token, position = e2e.decode_stepper(model, batch=2, prompt=5, steps=4, gen=gen)
    ids = torch.randint(0, 96, (2, 5), generator=torch.Generator().manual_seed(1))
    seq = torch.cat([ids, token.clone()], 1)
    for i in range(3):
        logits = step()
        assert int(position) == 6 + i
        with torch.inference_mode():
            full = model(input_ids=seq, use_cache=False).logits[:, -1]
        torch.testing.assert_close(logits[:, -1], full, rtol=1e-4, atol=1e-4)
        seq = torch.cat([seq, token.clone()], 1)
    assert torch.equal(seq[:, -1:], token)
