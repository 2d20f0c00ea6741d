"""Rotation through the real pipeline on the 2-layer SmolLM2: presets, save → load, composition."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

import abqlab.pipeline as pipeline
from abqlab.calib.checkpoint import CalibCheckpoint
from abqlab.models.load import LoadedModel
from abqlab.rotation.online import OnlineRotation
from abqlab.validate import ConfigError, check_run

TINY = ("calib.nsamples=2", "calib.seqlen=32")


def spy_on_models(monkeypatch: pytest.MonkeyPatch) -> list[LoadedModel]:
    seen: list[LoadedModel] = []
    original = pipeline.evaluate

    def evaluate(loaded: LoadedModel, *args: Any, **kwargs: Any) -> Any:
        seen.append(loaded)
        return original(loaded, *args, **kwargs)

    monkeypatch.setattr(pipeline, "evaluate", evaluate)
    return seen


def test_quarot_save_then_load(
    run_pipeline: Callable[..., dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = spy_on_models(monkeypatch)
    first = run_pipeline("quant=w4a4", "calib=quarot", "calib.save_model=true", *TINY, name="q")
    assert first["status"] == "ok", first.get("reason")
    rotation = first["calibration"]["rotation"]
    assert rotation["untied_head"] is True
    assert rotation["online_down"] == "n=1536, factor=12, inner=H128"
    saved = first["_run_dir"] / "quantized.pt"
    second = run_pipeline("quant=w4a4", "calib=load", f"calib.load_from={saved}", name="load")
    assert second["status"] == "ok", second.get("reason")
    assert math.isfinite(first["metrics"]["ppl/wiki"])
    assert second["metrics"]["ppl/wiki"] == pytest.approx(first["metrics"]["ppl/wiki"], rel=1e-5)
    loaded = seen[1].model
    assert isinstance(loaded.model.layers[1].mlp.down_proj.input_transform, OnlineRotation)
    assert loaded.lm_head.weight is not loaded.model.embed_tokens.weight
    ids = torch.randint(0, 1000, (1, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, actual = seen[0].model(ids).logits, loaded(ids).logits
    assert torch.allclose(actual, expected, atol=1e-4), (actual - expected).abs().max()


def test_abq_with_rotation_runs(run_pipeline: Callable[..., dict[str, Any]]) -> None:
    record = run_pipeline(
        "quant=w4a4", "calib=abq", "calib.epochs=1", *TINY,
        "+calib.components.rotation.enabled=true",
        "++calib.components.smoothing.pairs=[qkv,vo,gate_up]",
    )
    assert record["status"] == "ok", record.get("reason")
    assert record["calibration"]["components"] == [
        "Rotation", "Smoothing", "Compensation", "Clipping"
    ]


def test_spinquant_learns_a_head_rotation_per_block(
    run_pipeline: Callable[..., dict[str, Any]],
) -> None:
    record = run_pipeline("quant=w4a4", "calib=spinquant", "calib.epochs=1", *TINY)
    assert record["status"] == "ok", record.get("reason")
    blocks = CalibCheckpoint(Path(record["_run_dir"]) / "calib").load()
    for state in blocks.values():
        r = state["Rotation"]["heads"].double()
        assert torch.allclose(r @ r.T, torch.eye(64, dtype=r.dtype), atol=1e-5)


def test_abq_with_rotation_needs_the_pairs_override(composer: Callable[..., Any]) -> None:
    cfg = composer("model=smollm2-2layer", "logger=none", "quant=w4a4", "calib=abq",
                   "+calib.components.rotation.enabled=true")
    with pytest.raises(ConfigError, match="up_down"):
        check_run(cfg)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (("calib=rtn", "+calib.components.rotation.learn=[heads]"), "block trainer"),
        (("calib=spinquant", "calib.epochs=0"), "block trainer"),
        (("calib=load", "calib.load_from=/nonexistent", "+calib.components.rotation.enabled=true"),
         "calib=load"),
    ],
)
def test_rotation_settings_that_cannot_act_are_refused(
    composer: Callable[..., Any], overrides: tuple[str, ...], match: str
) -> None:
    cfg = composer("model=smollm2-2layer", "logger=none", "quant=w4a4", *overrides)
    with pytest.raises(ConfigError, match=match):
        check_run(cfg)


@pytest.mark.parametrize(
    "preset, extra",
    [
        ("rtn", ()),
        ("smoothquant", ()),  # its pairs (qkv, gate_up) do not cross an online rotation
        ("gptq", ()),
        ("omniquant", ("calib.epochs=1", "++calib.components.smoothing.pairs=[qkv,vo,gate_up]")),
    ],
)
def test_rotation_composes_with_every_preset(
    run_pipeline: Callable[..., dict[str, Any]], preset: str, extra: tuple[str, ...]
) -> None:
    """One override puts the rotation under any method (abq and quarot: tests above)."""
    record = run_pipeline(
        "quant=w4a4", f"calib={preset}", *TINY, *extra, "+calib.components.rotation.enabled=true"
    )
    assert record["status"] == "ok", record.get("reason")
    rotation = record["calibration"]["rotation"]
    assert rotation["untied_head"] is True
    assert rotation["residual"] == "n=576, factor=36, inner=H16"
    assert rotation["online_down"] == "n=1536, factor=12, inner=H128"
    assert math.isfinite(record["metrics"]["ppl/wiki"])
    if preset != "rtn":
        assert record["calibration"]["components"][0] == "Rotation"


def test_rotation_with_a_quantized_kv_cache(
    run_pipeline: Callable[..., dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The online q/k rotation (R3) sits before the K-cache quantizer; V heads rotate offline."""
    seen = spy_on_models(monkeypatch)
    record = run_pipeline(
        "quant=w4a8", "quant.k_bits=4", "quant.v_bits=4", "calib=quarot", *TINY,
        "+calib.components.rotation.online_qk=true",
    )
    assert record["status"] == "ok", record.get("reason")
    assert record["calibration"]["rotation"]["online_qk"] == "n=64, factor=1, inner=H64"
    attention = seen[0].model.model.layers[0].self_attn
    assert isinstance(attention.abqlab_qk_rotation, OnlineRotation)
    assert set(attention.abqlab_qkv) >= {"k", "v"}
    assert math.isfinite(record["metrics"]["ppl/wiki"])
