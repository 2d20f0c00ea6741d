"""Every calib preset composes, validates and builds its components; ablations change one key."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from abqlab.calib import METHODS
from abqlab.calib.blockwise import enabled_components
from abqlab.calib.train import BlockTrainer
from abqlab.config import CalibConfig
from abqlab.pipeline import typed
from abqlab.validate import ConfigError, check_run

CONF_CALIB = Path(__file__).resolve().parents[2] / "conf" / "calib"
PRESETS = sorted(p.stem for p in CONF_CALIB.glob("*.yaml"))
EXPECTED = {  # method, components in run order, loss weights
    "rtn": ("rtn", [], {}),
    "smoothquant": ("blockwise", ["Smoothing"], {}),
    "omniquant": ("blockwise", ["Smoothing", "Clipping"], {"mse_fp": 1.0}),
    "abq": (
        "blockwise",
        ["Smoothing", "Compensation", "Clipping"],
        {"mse_fp": 1.0, "mse_fpstar": 1.0, "dlc": 1.0, "akl": 1.0},
    ),
    "gptq": ("blockwise", ["GPTQ"], {}),
    "awq": ("blockwise", ["AWQ"], {}),
    "awq_gptq": ("blockwise", ["AWQ", "GPTQ"], {}),
    "quarot": ("blockwise", ["Rotation", "GPTQ"], {}),
    "spinquant": ("blockwise", ["Rotation", "GPTQ"], {"mse_fp": 1.0, "mse_fpstar": 1.0}),
    "load": ("load", [], {}),
}
Composer = Callable[..., Any]


def compose_calib(composer: Composer, preset: str, *overrides: str) -> Any:
    extra = ("calib.load_from=/nowhere/quantized.pt",) if preset == "load" else ()
    return composer("model=smollm2-2layer", "logger=none", f"calib={preset}", *extra, *overrides)


def flat(node: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def walk(value: Any, prefix: str) -> None:
        if isinstance(value, dict) and value:
            for key, item in value.items():
                walk(item, f"{prefix}.{key}" if prefix else str(key))
        else:
            out[prefix] = value

    walk(OmegaConf.to_container(node, resolve=True), "")
    return out


def test_every_preset_is_known() -> None:
    assert sorted(EXPECTED) == PRESETS


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_composes_validates_and_builds(composer: Composer, preset: str) -> None:
    cfg = compose_calib(composer, preset)
    check_run(cfg)
    calib = typed(cfg.calib, CalibConfig)
    method, components, losses = EXPECTED[preset]
    assert calib.name == preset and calib.method == method
    METHODS.get(calib.method)  # importable
    assert [type(c).__name__ for c in enabled_components(calib)] == components
    assert {k: float(v) for k, v in calib.losses.items()} == losses
    if components and calib.epochs > 0:
        assert BlockTrainer(calib, {}).weights == losses


def test_smoothquant_is_fixed_closed_form(composer: Composer) -> None:
    calib = typed(compose_calib(composer, "smoothquant").calib, CalibConfig)
    (smoothing,) = enabled_components(calib)
    assert smoothing.cfg.learnable is False and smoothing.cfg.alpha == 0.5
    assert calib.epochs == 0


@pytest.mark.parametrize(
    ("override", "key", "value"),
    [
        ("calib.losses.akl=0", "calib.losses.akl", 0.0),
        (
            "calib.components.compensation.enabled=false",
            "calib.components.compensation.enabled",
            False,
        ),
        ("calib.components.compensation.rank=4", "calib.components.compensation.rank", 4),
        ("calib.epochs=20", "calib.epochs", 20),
    ],
)
def test_ablation_changes_exactly_one_key(
    composer: Composer, override: str, key: str, value: Any
) -> None:
    base, ablated = (
        flat(compose_calib(composer, "abq")),
        flat(compose_calib(composer, "abq", override)),
    )
    assert {k for k in base.keys() | ablated.keys() if base.get(k) != ablated.get(k)} == {key}
    assert ablated[key] == value


def test_ablations_take_effect(composer: Composer) -> None:
    no_akl = typed(compose_calib(composer, "abq", "calib.losses.akl=0").calib, CalibConfig)
    trainer = BlockTrainer(no_akl, {})
    assert set(trainer.weights) == {"mse_fp", "mse_fpstar", "dlc"}
    assert trainer.needs_fp_block is False
    assert BlockTrainer(typed(compose_calib(composer, "abq").calib, CalibConfig), {}).needs_fp_block
    no_comp = typed(
        compose_calib(composer, "abq", "calib.components.compensation.enabled=false").calib,
        CalibConfig,
    )
    assert [type(c).__name__ for c in enabled_components(no_comp)] == ["Smoothing", "Clipping"]
    rank4 = typed(
        compose_calib(composer, "abq", "calib.components.compensation.rank=4").calib, CalibConfig
    )
    compensation = [c for c in enabled_components(rank4) if type(c).__name__ == "Compensation"]
    assert compensation[0].cfg.rank == 4


@pytest.mark.parametrize(
    "override",
    [
        "calib.components.compensation.rank=0",
        "+calib.components.clipping.bogus=1",
        "+calib.components.rotations={}",
        "+calib.losses.mse=1",
    ],
)
def test_bad_calib_settings_are_config_errors(composer: Composer, override: str) -> None:
    with pytest.raises(ConfigError, match="calib"):
        check_run(compose_calib(composer, "abq", override))


def test_gptq_runs_two_block_forwards_per_block(
    run_pipeline: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """epochs=0 and no statistics: no float targets, no float stream — per block one pass for
    the Hessians and one to move the quantized stream on (four before)."""
    import abqlab.calib.blockwise as blockwise

    calls = {"n": 0}
    real = blockwise.run_block

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(blockwise, "run_block", counted)
    record = run_pipeline("quant=w4a16", "calib=gptq", "calib.nsamples=2", "calib.seqlen=32")
    assert record["status"] == "ok"
    assert calls["n"] == 2 * 2  # two blocks
