"""Activation clip search: a ratio < 1 where outliers cost; recorded, saved and reloaded."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from abqlab.calib.components.act_clip import ActClipConfig, best_ratio
from abqlab.quant.fake_linear import FakeQuantLinear
from abqlab.quant.spec import QuantSpec


def linear_a4(n_in: int) -> FakeQuantLinear:
    torch.manual_seed(0)
    return FakeQuantLinear(nn.Linear(n_in, 32, bias=False), None,
                           QuantSpec(4, False, -1, activation=True), "toy")


RATIOS = [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3]


def test_wide_gaussian_tokens_are_clipped() -> None:
    """576 Gaussian channels (a rotated residual): min/max reaches ~3.2 sd; 16 levels do better
    on a narrower range (MSE-optimal 4-bit clipping of a Gaussian is near 2.5 sd)."""
    linear = linear_a4(576)
    x = torch.randn(512, 576, generator=torch.Generator().manual_seed(1))
    ratio, errors = best_ratio(linear, x, RATIOS)
    assert 0.5 < ratio < 1.0 and errors[ratio] < 0.9 * errors[1.0]
    assert linear.a_clip == 1.0  # the search leaves the layer as it was


def test_heavy_tailed_tokens_keep_their_range() -> None:
    """Student-t(2) entries: clipping the rare huge values costs more than it saves."""
    linear = linear_a4(256)
    torch.manual_seed(2)
    x = torch.distributions.StudentT(2.0).sample((512, 256))
    ratio, errors = best_ratio(linear, x, RATIOS)
    assert ratio >= 0.9 and errors[0.5] > 2 * errors[1.0]


def test_bad_ratios_refused() -> None:
    with pytest.raises(ValueError, match="ratios"):
        ActClipConfig(ratios=[1.2])
    with pytest.raises(ValueError, match="ratios"):
        ActClipConfig(ratios=[])


def test_pipeline_records_saves_and_reloads(run_pipeline: Callable[..., dict[str, Any]]) -> None:
    first = run_pipeline("quant=w4a4", "calib=quarot", "calib.save_model=true", "calib.nsamples=2",
                         "calib.seqlen=32", "+calib.components.act_clip.enabled=true",
                         "+calib.components.act_clip.ratios=[1.0,0.7,0.4]", name="clip")
    assert first["status"] == "ok", first.get("reason")
    chosen = [r for b in first["calibration"]["blocks"] for r in b.get("a_clip", {}).values()]
    assert chosen and set(chosen) <= {0.7, 0.4}  # recorded where the search left 1.0

    saved = first["_run_dir"] / "quantized.pt"
    second = run_pipeline("quant=w4a4", "calib=load", f"calib.load_from={saved}", name="load")
    assert second["status"] == "ok", second.get("reason")
    assert math.isfinite(first["metrics"]["ppl/wiki"])
    assert second["metrics"]["ppl/wiki"] == pytest.approx(first["metrics"]["ppl/wiki"], rel=1e-5)


def test_shared_ratio_per_input_tensor(run_pipeline: Callable[..., dict[str, Any]]) -> None:
    record = run_pipeline("quant=w4a4", "calib=quarot", "calib.nsamples=2", "calib.seqlen=32",
                          "+calib.components.act_clip.enabled=true",
                          "+calib.components.act_clip.shared=true", name="shared")
    assert record["status"] == "ok", record.get("reason")
    for block in record["calibration"]["blocks"]:
        clips = block.get("a_clip", {})
        ratio = {p: clips.get(p, 1.0) for p in ("self_attn.q_proj", "self_attn.k_proj",
                                                 "self_attn.v_proj", "mlp.gate_proj",
                                                 "mlp.up_proj")}
        assert ratio["self_attn.q_proj"] == ratio["self_attn.k_proj"] == ratio["self_attn.v_proj"]
        assert ratio["mlp.gate_proj"] == ratio["mlp.up_proj"]


def test_before_gptq_runs_first_and_gptq_fits_the_chosen_clip(
        run_pipeline: Callable[..., dict[str, Any]]) -> None:
    from abqlab.calib.components.act_clip import ActClip
    from abqlab.calib.components.gptq import GPTQ, GPTQConfig

    assert ActClip(ActClipConfig(before_gptq=True)).order < GPTQ(GPTQConfig()).order
    assert ActClip(ActClipConfig()).order > GPTQ(GPTQConfig()).order
    record = run_pipeline("quant=w4a4", "calib=quarot", "calib.nsamples=2", "calib.seqlen=32",
                          "+calib.components.act_clip.enabled=true",
                          "+calib.components.act_clip.before_gptq=true",
                          "+calib.components.act_clip.ratios=[1.0,0.7,0.4]",
                          "++calib.components.gptq.act_aware=true", name="before")
    assert record["status"] == "ok", record.get("reason")
    chosen = [r for b in record["calibration"]["blocks"] for r in b.get("a_clip", {}).values()]
    assert chosen and set(chosen) <= {0.7, 0.4}
    assert math.isfinite(record["metrics"]["ppl/wiki"])
