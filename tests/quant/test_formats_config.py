"""Format settings in configs: presets compose and validate; bad combinations fail in one line."""

from __future__ import annotations

import pytest
from abq_helpers import CONF_DIR, compose_run

from abqlab.config import QuantConfig
from abqlab.pipeline import typed
from abqlab.quant.apply import act_spec, qkv_specs, weight_spec
from abqlab.quant.formats.describe import describe
from abqlab.validate import ConfigError, check_run

TWO_LAYER = "model=smollm2-2layer"
FORMAT_PRESETS = sorted(
    p.stem for p in (CONF_DIR / "quant").glob("*.yaml") if "fp" in p.stem.partition("-")[2]
)


def config_error(*overrides: str) -> str:
    with pytest.raises(ConfigError) as info:
        check_run(compose_run([TWO_LAYER, *overrides]))
    message = str(info.value)
    assert "\n" not in message
    return message


def test_there_are_format_presets() -> None:
    assert {"w8a8-fp8", "w4a8-fp4", "w4a8-mxfp4", "w4a8-nvfp4"} <= set(FORMAT_PRESETS)


@pytest.mark.parametrize("preset", FORMAT_PRESETS)
def test_format_presets_validate_with_gptq_and_lorc(preset: str) -> None:
    cfg = compose_run([TWO_LAYER, f"quant={preset}", "calib=gptq", "calib.lorc.rank=8"])
    check_run(cfg)
    quant = typed(cfg.quant, QuantConfig)
    w, a = weight_spec(quant), act_spec(quant)
    assert w is not None and w.fmt == quant.w_format and w.sym
    assert a is None or (a.fmt == quant.a_format and a.activation)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["quant=w4a16", "quant.w_format=fp4_e2m1", "quant.w_bits=16"],
         "quant.w_bits=16: allowed: 4 (the width of w_format=fp4_e2m1); or w_format=int"),
        (["quant.w_format=fp8_e4m3", "quant.w_bits=4"],
         "quant.w_bits=4: allowed: 8 (the width of w_format=fp8_e4m3)"),
        (["quant=w4a8-mxfp4", "quant.w_group=128"],
         "quant.w_group=128: allowed: 32 (the block of w_format=mxfp4)"),
        (["quant=w4a8-mxfp4", "quant.a_group=-1"],
         "quant.a_group=-1: allowed: 32 (the block of a_format=mxfp8)"),
        (["quant=w4a8-mxfp4", "quant.w_scale_rule=m1"],
         "quant.w_scale_rule=m1: allowed: none: mxfp4 scales are already constrained"),
        (["quant=w4a8-fp4", "quant.w_group=-1", "quant.w_scale_rule=m2"],
         "quant.w_scale_rule=m2: allowed: m1 or none: m2 needs groups (w_group > 0)"),
        (["quant=w4a8-fp4", "quant.w_scale_rule=m3"],
         "quant.w_scale_rule=m3: allowed: none, m1, m2"),
        (["quant.w_format=fp4e2m1"], "quant.w_format=fp4e2m1: allowed: fp4_e2m1, fp6_e2m3"),
        (["quant=w2bb-a8", "quant.w_format=fp4_e2m1", "quant.w_bits=4"],
         "quant.w_bit_balance=True: allowed: false for the float format fp4_e2m1"),
        (["quant.k_bits=4", "quant.kv_format=fp8_e4m3"],
         "quant.k_bits=4: allowed: 8 (kv_format=fp8_e4m3) or 16"),
        (["quant.k_bits=4", "quant.kv_format=mxfp4"], "quant.kv_format=mxfp4: allowed: int or"),
        (["quant.k_bits=8", "quant.kv_granularity=channel"],
         "quant.kv_granularity=channel: allowed: token, head"),
        (["quant=w4a8-nvfp4", "calib=gptq", "calib.components.gptq.groups=dynamic"],
         "calib.components.gptq.groups=dynamic: allowed: static: nvfp4's per-tensor scale"),
        (["quant=fp", "calib.lorc.rank=8"],
         "calib.lorc.rank=8: allowed: 0 when weights stay in float (w_bits=16)"),
        (["calib.lorc.factor_bits=4", "calib.lorc.rank=8"],
         "calib.lorc.factor_bits=4: allowed: 8 or 16"),
        (["calib=load", "calib.load_from=x.pt", "calib.lorc.rank=8"],
         "calib.lorc.rank=8: allowed: 0 with calib=load"),
    ],
)
def test_bad_format_settings_fail_before_loading(overrides: list[str], expected: str) -> None:
    message = config_error(*overrides)
    assert message.startswith(expected), message


def test_unknown_format_suggests_a_close_name() -> None:
    assert "(did you mean fp8_e4m3" in config_error("quant.a_format=fp8e4m3")


def test_kv_cache_formats_and_granularity() -> None:
    cfg = compose_run([TWO_LAYER, "quant.k_bits=8", "quant.v_bits=8",
                       "quant.kv_format=fp8_e4m3", "quant.kv_granularity=head"])
    check_run(cfg)
    quant = typed(cfg.quant, QuantConfig)
    specs = qkv_specs(quant)
    assert set(specs) == {"k", "v"} and specs["k"].fmt == "fp8_e4m3" and specs["k"].sym
    assert describe(quant)["kv_cache"] == "k8 v8 fp8_e4m3 per-head"


def test_describe_names_each_part() -> None:
    quant = typed(compose_run(["quant=w4a8-fp4", "quant.w_scale_rule=m2"]).quant, QuantConfig)
    assert describe(quant) == {"weights": "fp4_e2m1 g128 m2", "activations": "fp8_e4m3 per-token",
                               "kv_cache": "float"}
    quant = typed(compose_run(["quant=w4a8"]).quant, QuantConfig)
    assert describe(quant)["weights"] == "int4 asym per-channel"
