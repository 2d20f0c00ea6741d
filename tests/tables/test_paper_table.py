"""abqlab-table: paper layout, best per column in bold, mean ± std over seeds, LaTeX booktabs,
published numbers apart and labelled."""

from __future__ import annotations

from pathlib import Path

import pytest
from records import record, write_store

from abqlab.tables import cli
from abqlab.tables.layout import build_table, setting_label
from abqlab.tables.published import published_table
from abqlab.tables.render import latex, markdown, tex_number


def records() -> list[dict]:
    rows = [record("rtn", "fp", ppl_wiki=14.0, ppl_c4=20.0)]
    rows += [record("rtn", "w4a4", ppl_wiki=1500.0, ppl_c4=2e6)]
    rows += [record("abq", "w4a4", seed=s, ppl_wiki=v, ppl_c4=30.0 + s)
             for s, v in ((1, 150.0), (2, 152.0), (3, 154.0))]
    rows += [record("rtn", "w6a6", ppl_wiki=17.0, avg6=0.40),
             record("abq", "w6a6", ppl_wiki=16.0, avg6=0.42)]
    rows += [record("abq", "w6a6", status="failed", seed=9)]
    return rows


def test_layout_rows_settings_and_cells() -> None:
    table = build_table(records())
    assert table.rows == ["FP", "rtn", "abq"]
    assert table.settings == ["W16A16", "W6A6", "W4A4"]
    assert table.metrics == ["ppl/wiki", "ppl/c4", "acc/avg6"]
    abq = table.cells[("abq", "W4A4", "ppl/wiki")].agg
    assert (abq.n, abq.mean, abq.std) == (3, 152.0, 2.0)
    assert ("rtn", "W16A16", "ppl/wiki") not in table.cells  # float is the FP row
    assert ("W4A4", "acc/avg6") not in table.columns  # no value: no column


def test_best_per_column_lowest_ppl_highest_accuracy() -> None:
    table = build_table(records())
    best = {(r, s, m) for (r, s, m), c in table.cells.items() if c.best}
    assert best == {("abq", "W4A4", "ppl/wiki"), ("abq", "W4A4", "ppl/c4"),
                    ("abq", "W6A6", "ppl/wiki"), ("abq", "W6A6", "acc/avg6")}


def test_families_sharing_a_cell_are_picked_and_flagged() -> None:
    rows = [record("abq", "w4a4", epochs=1, ppl_wiki=100.0, ppl_c4=50.0),
            record("abq", "w4a4", epochs=4, ppl_wiki=120.0, ppl_c4=40.0)]
    def cells(pick: str) -> tuple[float, float, int]:
        table = build_table(rows, pick=pick)
        wiki, c4 = (table.cells[("abq", "W4A4", m)] for m in ("ppl/wiki", "ppl/c4"))
        return wiki.agg.mean, c4.agg.mean, c4.hidden

    assert cells("latest") == (120.0, 40.0, 1)
    # best by the first metric, and that same run in every column (no per-column cherry-picking)
    assert cells("best") == (100.0, 50.0, 1)
    assert "the row shows the most recent one" in markdown(build_table(rows), "t")
    best_note = markdown(build_table(rows, pick="best"), "t")
    assert "the row shows the one with the best Wiki" in best_note


def test_markdown_cells() -> None:
    text = markdown(build_table(records()), "Ours")
    assert text.startswith("**Ours**")
    assert "| Method | W16A16 Wiki | W16A16 C4 | W6A6 Wiki |" in text
    assert "| abq |" in text and "**152 ± 2 (3)**" in text
    assert "mean ± std over seeds" in text and "bold: best per column" in text


def test_latex_is_booktabs_with_bold_and_pm() -> None:
    text = latex(build_table(records()), "Ours")
    for command in (r"\toprule", r"\midrule", r"\bottomrule", r"\begin{tabular}{l rr rr rr}",
                    r"\multicolumn{2}{c}{W6A6}", r"\cmidrule(lr){2-3}"):
        assert command in text, command
    assert r"$\mathbf{152 \pm 2}$" in text
    assert r"$2\times10^{6}$" in text
    assert text.count(r"\\") == 2 + 3 + 2  # header rows, method rows, notes


def test_tex_number_and_escapes() -> None:
    assert tex_number(1.188e6) == r"1.19\times10^{6}"
    assert tex_number(14.0) == "14"
    table = build_table([record("abq_no-akl", "w4a4", ppl_wiki=1.0),
                         record("rtn", "w4a4", ppl_wiki=2.0)])
    assert r"abq\_no-akl" in latex(table, "t")


def test_setting_labels() -> None:
    assert setting_label({"w_bits": 2, "w_bit_balance": True, "a_bits": 8}) == "W2*A8"
    assert setting_label({"w_bits": 4, "w_group": 128, "a_bits": 16}) == "W4A16g128"
    assert setting_label({"w_bits": 4, "a_bits": 8, "k_bits": 4, "v_bits": 4}) == "W4A8KV4"


def test_published_numbers_stay_apart_and_unbolded() -> None:
    table = published_table("LLaMA-2-7B", settings=["W16A16", "W4A4"])
    assert table.rows[0] == "FP16" and "ABQ-LLM" in table.rows
    assert table.cells[("ABQ-LLM", "W4A4", "ppl/wikitext2")].agg.mean == 9.31
    assert not any(c.best for c in table.cells.values())
    with pytest.raises(SystemExit, match="models: LLaMA-7B"):
        published_table("GPT-9")


def test_cli_writes_md_and_tex_and_one_model_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = records() + [record("abq", "w4a4", model="other", ppl_wiki=1.0)]
    store = write_store(tmp_path / "runs.jsonl", rows)
    cli.main([str(store), "--out", str(tmp_path / "t" / "table"), "--published", "LLaMA-2-7B"])
    out = capsys.readouterr()
    assert "showing model m; also in the store: other" in out.err
    assert "Published, not ours: LLaMA-2-7B" in out.out
    md, tex = (tmp_path / "t" / "table.md").read_text(), (tmp_path / "t" / "table.tex").read_text()
    assert md == out.out
    assert "**152 ± 2 (3)**" in md and "1 †" not in md  # the other model's run is not shown
    assert tex.count(r"\begin{tabular}") == 2 and "Published, not ours" in tex


def test_seeds_cli_still_works(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from abqlab.tables import seeds

    store = write_store(tmp_path / "runs.jsonl", records())
    seeds.main([str(store), "--baseline", "rtn"])
    assert "152 ± 2 (n=3)" in capsys.readouterr().out
