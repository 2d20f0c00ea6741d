"""The learned residual rotation through the real pipeline: trained, saved, reloaded, checked."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from abqlab.validate import ConfigError, check_run


def test_pipeline_learns_saves_and_reloads(run_pipeline: Callable[..., dict[str, Any]]) -> None:
    first = run_pipeline(
        "quant=w4a4", "calib=quarot", "calib.save_model=true", "calib.nsamples=2",
        "calib.seqlen=32", "+calib.components.rotation.learn=[residual]",
        "+calib.components.rotation.residual_steps=2",
        "+calib.components.rotation.residual_windows=2", name="learned")
    assert first["status"] == "ok", first.get("reason")
    learned = first["calibration"]["rotation"]["learned_residual"]
    assert learned["steps"] == 2 and len(learned["held_out_curve"]) == 2
    assert (first["_run_dir"] / "residual_rotation.pt").is_file()
    saved = first["_run_dir"] / "quantized.pt"
    second = run_pipeline("quant=w4a4", "calib=load", f"calib.load_from={saved}", name="load")
    assert second["status"] == "ok", second.get("reason")
    assert second["metrics"]["ppl/wiki"] == pytest.approx(first["metrics"]["ppl/wiki"], rel=1e-5)


def test_validate_refuses_residual_learning_without_residual_rotation(
    composer: Callable[..., Any],
) -> None:
    cfg = composer("quant=w4a4", "calib=quarot", "+calib.components.rotation.learn=[residual]",
                   "calib.components.rotation.residual=false")
    with pytest.raises((ConfigError, ValueError), match="residual"):
        check_run(cfg)


def test_validate_allows_residual_learning_without_block_training(
    composer: Callable[..., Any],
) -> None:
    check_run(composer("quant=w4a4", "calib=rtn", "+calib.components.rotation.enabled=true",
                       "+calib.components.rotation.learn=[residual]"))
    with pytest.raises(ConfigError, match="block trainer"):
        check_run(composer("quant=w4a4", "calib=rtn", "+calib.components.rotation.enabled=true",
                           "+calib.components.rotation.learn=[residual,heads]"))
