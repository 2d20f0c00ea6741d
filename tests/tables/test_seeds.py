"""Seed tables: mean ± std per cell, and a difference called significant only beyond 2 std."""

from __future__ import annotations

from typing import Any

import pytest

from abqlab.tables.seeds import Aggregate, aggregate, seed_table


def record(calib: str, quant: str, seed: int, ppl: float, status: str = "ok") -> dict[str, Any]:
    return {
        "config": {"calib": {"name": calib, "seed": seed}, "quant": {"name": quant}},
        "metrics": {"ppl/wiki": ppl},
        "status": status,
    }


def test_aggregate_groups_over_seeds_and_skips_failures() -> None:
    records = [record("abq", "w4a4", s, v) for s, v in ((1, 10.0), (2, 12.0), (3, 14.0))]
    records.append(record("abq", "w4a4", 4, 1e9, status="failed"))
    groups = aggregate(records, "calib", "quant", "ppl/wiki")
    agg = groups[("abq", "w4a4")]
    assert agg.n == 3 and agg.mean == pytest.approx(12.0) and agg.std == pytest.approx(2.0)


def test_significance_needs_more_than_two_std() -> None:
    base = Aggregate((10.0, 11.0, 12.0))  # mean 11, std 1
    assert not Aggregate((12.0, 13.0, 14.0)).differs_from(base)  # Δ 2: not beyond 2 std
    assert Aggregate((12.5, 13.5, 14.5)).differs_from(base)  # Δ 2.5 > 2
    assert not Aggregate((13.0, 15.0, 17.0)).differs_from(base)  # Δ 4 < 2 × the larger std 2
    assert not Aggregate((20.0,)).differs_from(base)  # one seed: no claim either way


def test_table_marks_rows_against_the_baseline() -> None:
    records = [record("abq", "w4a4", s, v) for s, v in ((1, 10.0), (2, 11.0), (3, 12.0))]
    records += [record("abq-no-akl", "w4a4", s, v) for s, v in ((1, 10.5), (2, 11.5), (3, 12.5))]
    records += [record("abq-no-dlc", "w4a4", s, v) for s, v in ((1, 20.0), (2, 21.0), (3, 22.0))]
    table = seed_table(records, "calib", "quant", "ppl/wiki", baseline="abq")
    lines = table.splitlines()
    assert lines[2] == "| abq | 11 ± 1 (n=3) |"
    assert lines[3].endswith("Δ +0.5 n.s.; paired Δ +0.5 ± 0, 3/3 above |")
    assert lines[4].endswith("Δ +10 significant; paired Δ +10 ± 0, 3/3 above |")


def test_a_record_from_before_added_fields_joins_its_seed_family() -> None:
    from abqlab.tables.seeds import family_key

    old = {"config": {"quant": {"w_bits": 4}, "calib": {"name": "abq", "seed": 2}}}
    new = {"config": {"quant": {"w_bits": 4, "a_clip": 1.0, "w_format": "int"},
                      "calib": {"name": "abq", "seed": 1}}}
    assert family_key(old) == family_key(new)
    clipped = {"config": {"quant": {"w_bits": 4, "a_clip": 0.9}, "calib": {"name": "abq"}}}
    assert family_key(clipped) != family_key(old)


def test_paired_deltas_match_seeds_and_skip_unshared_ones() -> None:
    from abqlab.tables.seeds import paired_deltas

    records = [record("abq", "w4a4", s, v) for s, v in ((1, 10.0), (2, 20.0), (3, 30.0))]
    records += [record("abq-no-akl", "w4a4", s, v) for s, v in ((3, 29.0), (1, 12.0), (4, 1.0))]
    deltas = paired_deltas(records, "calib", "quant", "ppl/wiki", baseline="abq")
    assert sorted(deltas[("abq-no-akl", "w4a4")]) == [-1.0, 2.0]  # seeds 1 and 3; 4 unshared
    assert ("abq", "w4a4") not in deltas
