"""Budget configs are checked before any model loads; unused new fields keep old config hashes."""

from __future__ import annotations

import pytest
from abq_helpers import compose_run

from abqlab.pipeline import recorded_config
from abqlab.track.store import config_hash
from abqlab.validate import ConfigError, check_run

MIXED = ("model=smollm2-2layer", "quant=mixed")


def config_error(*overrides: str) -> str:
    with pytest.raises(ConfigError) as info:
        check_run(compose_run([*MIXED, *overrides]))
    assert "\n" not in str(info.value)
    return str(info.value)


def test_presets_pass() -> None:
    check_run(compose_run(list(MIXED)))
    check_run(compose_run(["model=smollm2-2layer", "quant=mixed-learned", "calib=gptq"]))
    check_run(compose_run([*MIXED, "quant.budget.avg_bits=null", "quant.budget.bytes=70000000"]))


@pytest.mark.parametrize(
    ("overrides", "start"),
    [
        (["quant.budget.bytes=1000"], "quant.budget=avg_bits and bytes: allowed: one of"),
        (["quant.budget.allocator=knapsak"], "quant.budget.allocator=knapsak: allowed: greedy,"),
        (["quant.budget.sensitivity=hessian"], "quant.budget.sensitivity=hessian: allowed:"),
        (["quant.budget.weights=awq"], "quant.budget.weights=awq: allowed: rtn, gptq"),
        (["quant.budget.candidates=[2,9]"], "quant.budget.candidates=[2, 9]: allowed:"),
        (["quant.w_format=fp4_e2m1", "quant.w_bits=4", "quant.w_sym=true"],
         "quant.budget.candidates=[2, 3, 4, 8]: allowed: widths of fp4_e2m1's family: 4, 6, 8"),
        (["quant.w_format=nvfp4", "quant.w_bits=4", "quant.w_group=16", "quant.w_sym=true",
          "quant.budget.candidates=[4,8]"], "quant.budget.candidates=[4, 8]: allowed: widths of "
         "nvfp4's family: 4"),
        (["quant.budget.steps=0"], "quant.budget.steps=0: allowed: >= 1"),
        (["calib.lorc.rank=8"], "calib.lorc.rank=8: allowed: 0 with quant.budget"),
        (["+quant.layer_bits={model.layers.0.mlp.up_proj: 4}"], "quant.layer_bits=…"),
    ],
)
def test_bad_budget_settings(overrides: list[str], start: str) -> None:
    assert config_error(*overrides).startswith(start)


def test_infeasible_budgets_name_the_smallest_allocation() -> None:
    message = config_error("quant.budget.avg_bits=2.4")  # every linear at W2 g64: 2.5 bits
    assert message.startswith("quant.budget.avg_bits=2.4: allowed: a feasible budget")
    assert "2.5000 bits per weight" in message
    message = config_error("quant.budget.avg_bits=null", "quant.budget.bytes=1000000")
    assert message.startswith("quant.budget.bytes=1000000: allowed: a feasible budget")


def test_float_format_budgets_choose_among_their_family() -> None:
    mx = [*MIXED, "quant.w_format=mxfp4", "quant.w_bits=4", "quant.w_group=32",
          "quant.w_sym=true", "quant.budget.candidates=[4,6,8]", "quant.budget.avg_bits=5.5"]
    check_run(compose_run(mx))
    base = ["model=smollm2-2layer", "quant=w8a8-fp8"]
    check_run(compose_run([*base, "+quant.layer_bits={model.layers.1.mlp.down_proj: 4}"]))
    with pytest.raises(ConfigError, match="allowed: 4, 6, 8 or 16"):
        check_run(compose_run([*base, "+quant.layer_bits={model.layers.1.mlp.down_proj: 3}"]))


def test_layer_bits_names_and_widths() -> None:
    base = ["model=smollm2-2layer", "quant=w3a16"]
    check_run(compose_run([*base, "+quant.layer_bits={model.layers.1.mlp.down_proj: 8}"]))
    with pytest.raises(ConfigError, match="quant.layer_bits.model.layers.5.mlp.down_proj=8"):
        check_run(compose_run([*base, "+quant.layer_bits={model.layers.5.mlp.down_proj: 8}"]))
    with pytest.raises(ConfigError, match="allowed: 1..8 or 16"):
        check_run(compose_run([*base, "+quant.layer_bits={model.layers.1.mlp.down_proj: 12}"]))


def test_unused_mixed_precision_fields_keep_old_hashes() -> None:
    config = recorded_config(compose_run(["model=smollm2-2layer", "quant=w3a16"]))
    old = {**config, "quant": {k: v for k, v in config["quant"].items()
                               if k not in ("layer_bits", "budget")}}
    assert config_hash(config) == config_hash(old)
    mixed = recorded_config(compose_run(list(MIXED)))
    changed = {**mixed, "quant": {**mixed["quant"], "budget": {
        **mixed["quant"]["budget"], "avg_bits": 3.0}}}
    assert config_hash(mixed) != config_hash(changed)
