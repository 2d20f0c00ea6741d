"""abqlab-figures: every figure the records allow, as PNG and PDF; none for missing data;
the Pareto front; PNGs logged to an offline wandb run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from records import curve_block, diagnostics, record, write_store

from abqlab.figures import cli
from abqlab.figures.results import pareto_front


def full_store(tmp_path: Path) -> Path:
    rows = [record("rtn", "fp", ppl_wiki=14.0, size=270.0)]
    rows += [record("rtn", "w4a4", ppl_wiki=1500.0, size=80.0),
             record("rtn", "w6a6", ppl_wiki=17.0, size=110.0)]
    rows += [record("abq", "w4a4", seed=s, ppl_wiki=150.0 + s, size=80.0) for s in (1, 2, 3)]
    rows += [record("abq", "w6a6", ppl_wiki=16.0, size=110.0)]
    rows[0]["diagnostics"] = diagnostics(1.0)
    rows[1]["diagnostics"] = diagnostics(2.0)
    rows[3]["diagnostics"] = diagnostics(0.5)
    rows[3]["calibration"] = {"blocks": [curve_block(0, [1.0, 0.8, 0.7]),
                                         curve_block(1, [2.0, 1.9, 1.95])]}
    return write_store(tmp_path / "runs.jsonl", rows)


def test_every_figure_is_written_as_png_and_pdf(tmp_path: Path) -> None:
    written = cli.build([full_store(tmp_path)], tmp_path / "figs")
    assert set(written) == {"ppl_vs_bits", "ablation_bars", "size_pareto", "sweep_runs",
                            "attention_w4a4", "channels_w4a4", "curves_abq_w4a4"}
    for name, paths in written.items():
        assert [p.suffix for p in paths] == [".png", ".pdf"], name
        assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert paths[1].read_bytes()[:5] == b"%PDF-"


def test_figures_need_their_data(tmp_path: Path) -> None:
    store = write_store(tmp_path / "runs.jsonl", [record("rtn", "fp", ppl_wiki=14.0),
                                                  record("rtn", "w4a4", ppl_wiki=99.0)])
    written = cli.build([store], tmp_path / "figs")
    assert set(written) == {"ppl_vs_bits", "ablation_bars"}  # no sizes, curves, diagnostics
    only = cli.build([store], tmp_path / "only", only=["ppl"])
    assert set(only) == {"ppl_vs_bits"}


def test_pareto_front() -> None:
    points = [(80.0, 150.0), (80.0, 1500.0), (110.0, 16.0), (100.0, 200.0), (270.0, 14.0)]
    assert pareto_front(points) == [(80.0, 150.0), (110.0, 16.0), (270.0, 14.0)]


def test_cli_logs_pngs_to_offline_wandb(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for var in [v for v in os.environ if v.startswith("WANDB_")]:
        monkeypatch.delenv(var)
    out = tmp_path / "figs"
    cli.main([str(full_store(tmp_path)), "--out", str(out), "--only", "ppl,attention",
              "--wandb", "offline"])
    printed = capsys.readouterr().out
    assert "ppl_vs_bits:" in printed and "wandb (offline)" in printed
    runs = list((out / "wandb").rglob("offline-run-*"))
    assert runs and any(p.suffix == ".wandb" for p in runs[0].rglob("*"))
    images = [p for p in runs[0].rglob("*.png") if "images" in p.parts]
    assert len(images) == 2
