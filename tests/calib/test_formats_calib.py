"""Float formats through calibration: GPTQ, learnable clipping, smoothing, LoRC, save/load."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from calib_util import block_case, tiny_llama
from test_gptq import correlated_inputs, output_error

from abqlab.calib.checkpoint import CalibCheckpoint
from abqlab.calib.components import build_component
from abqlab.calib.components.gptq import GPTQConfig, gptq_quantize
from abqlab.calib.train import forward
from abqlab.config import QuantConfig
from abqlab.quant.quantizer import fake_quant, fake_quant_grouped, to_groups
from abqlab.quant.spec import QuantSpec

SPECS = {
    "fp4-g16": QuantSpec(4, True, 16, fmt="fp4_e2m1"),
    "fp4-g16-m2": QuantSpec(4, True, 16, fmt="fp4_e2m1", scale_rule="m2"),
    "int4-g16-m1": QuantSpec(4, False, 16, scale_rule="m1"),
    "fp8-channel": QuantSpec(8, True, -1, fmt="fp8_e4m3"),
    "fp6-channel": QuantSpec(6, True, -1, fmt="fp6_e2m3"),
    "mxfp4": QuantSpec(4, True, 32, fmt="mxfp4"),
    "nvfp4": QuantSpec(4, True, 16, fmt="nvfp4"),
}


GPTQ_CASES = [  # dynamic groups cannot see a row's other groups: a config error for these
    (name, groups) for name in SPECS for groups in ("static", "dynamic")
    if groups == "static" or not (SPECS[name].fmt == "nvfp4" or SPECS[name].scale_rule == "m2")
]


@pytest.mark.parametrize(("name", "groups"), GPTQ_CASES)
def test_gptq_beats_round_to_nearest_in_every_format(name: str, groups: str) -> None:
    spec = SPECS[name]
    gen = torch.Generator().manual_seed(11)
    x = correlated_inputs(3)
    weight = torch.randn(48, 64, generator=gen)
    hessian = 2 * x.T @ x / x.shape[0]
    result = gptq_quantize(weight, hessian, spec, GPTQConfig(groups=groups, act_order=True))
    rtn_error = output_error(x, weight, fake_quant(weight, spec))
    assert output_error(x, weight, result.weight) < 0.9 * rtn_error
    if spec.group > 0 and result.g_idx is None:  # every weight sits on its group's grid
        grouped = to_groups(result.weight.float(), spec.group)
        again = fake_quant_grouped(grouped, spec, result.scale, result.zero)
        assert torch.allclose(again, grouped, atol=1e-6)


@pytest.mark.parametrize("fmt", ["fp4_e2m1", "mxfp4", "nvfp4"])
def test_learnable_clipping_gets_gradients_in_float_formats(fmt: str) -> None:
    group = {"fp4_e2m1": 16, "mxfp4": 32, "nvfp4": 16}[fmt]
    quant = QuantConfig(name=fmt, w_bits=4, w_group=group, w_format=fmt)
    case = block_case(tiny_llama(seed=6), index=0)
    ctx = case.context(quant)
    params = build_component("clipping", {}).attach(ctx)
    out = forward(case.block, case.x, case.kwargs)
    (out - case.run(case.float_block)).pow(2).mean().backward()
    moved = [p for p in params if p.grad is not None and p.grad.abs().sum() > 0]
    assert len(moved) >= len(params) // 2


@pytest.fixture
def tiny_calib() -> tuple[str, ...]:
    return ("calib.nsamples=2", "calib.seqlen=32")


def test_gptq_nvfp4_with_lorc_saves_and_loads(
    run_pipeline: Callable[..., dict[str, Any]], tiny_calib: tuple[str, ...]
) -> None:
    first = run_pipeline("quant=w4a8-nvfp4", "calib=gptq", "calib.lorc.rank=8",
                         "calib.save_model=true", *tiny_calib, name="gptq")
    assert first["status"] == "ok", first.get("reason")
    lorc = first["calibration"]["lorc"]
    assert lorc["layers"] == 14 and lorc["factor_bits"] == 8
    assert 0.01 < lorc["rel_error_lorc"] < lorc["rel_error"]  # vs the float weight, not zero
    assert first["calibration"]["formats"]["weights"] == "nvfp4"
    saved = first["_run_dir"] / "quantized.pt"
    second = run_pipeline("quant=w4a8-nvfp4", "calib=load", f"calib.load_from={saved}",
                          name="load")
    assert second["status"] == "ok", second.get("reason")
    assert second["metrics"]["ppl/wiki"] == pytest.approx(first["metrics"]["ppl/wiki"], rel=1e-4)


def test_smoothing_and_clipping_train_in_mx_formats(
    run_pipeline: Callable[..., dict[str, Any]], tiny_calib: tuple[str, ...]
) -> None:
    record = run_pipeline("quant=w4a8-mxfp4", "calib=omniquant", "calib.epochs=1",
                          "calib.select=last", *tiny_calib)
    assert record["status"] == "ok", record.get("reason")
    assert math.isfinite(record["metrics"]["ppl/wiki"])
    learned = CalibCheckpoint(Path(record["_run_dir"]) / "calib").load()[0]
    bounds = learned["Clipping"]["mlp.down_proj"]
    assert (bounds["up"] - 4.0).abs().max() > 1e-3  # the clipping logits moved from their init
    assert set(learned["Smoothing"]) == {"qkv", "vo", "gate_up", "up_down"}


def test_formats_and_kv_cache_are_recorded(run_pipeline: Callable[..., dict[str, Any]]) -> None:
    record = run_pipeline("quant=w4a8-fp4", "quant.w_scale_rule=m2", "calib.lorc.rank=4",
                          "quant.k_bits=8", "quant.v_bits=8", "quant.kv_format=fp8_e4m3")
    assert record["status"] == "ok", record.get("reason")
    saved = json.loads((Path(record["_run_dir"]) / "result.json").read_text())
    assert saved["calibration"]["formats"] == {
        "weights": "fp4_e2m1 g128 m2",
        "activations": "fp8_e4m3 per-token",
        "kv_cache": "k8 v8 fp8_e4m3 per-token",
    }
    assert saved["config"]["quant"]["kv_format"] == "fp8_e4m3"
    lorc = saved["calibration"]["lorc"]
    assert lorc["rel_error_lorc"] < lorc["rel_error"]
