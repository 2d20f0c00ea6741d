"""experiments/rotations/table.py: rows are labelled by the bits actually run (quant=w4a4 with
a_bits=16 is W4A16, never a W4A4 cell), off-budget or borrowed cells are marked, and baselines
from other stores count only on the same evaluation protocol."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from abq_helpers import load_script


@pytest.fixture(scope="module")
def table() -> Any:
    module = load_script("experiments/rotations/table.py", "rotations_table")
    return module


def record(ppl: float, quant: str = "w4a4", w_bits: int = 4, a_bits: int = 4,
           calib: str = "quarot", rotation: bool = True, nsamples: int = 8, windows: int = 40,
           **quant_extra: Any) -> dict[str, Any]:
    components: dict[str, Any] = {"rotation": {"enabled": True, "seed": 0}} if rotation else {}
    config = {
        "model": {"name": "smollm2-135m", "num_hidden_layers": None, "dtype": "float32"},
        "quant": {"name": quant, "w_bits": w_bits, "a_bits": a_bits, "w_group": -1,
                  "w_bit_balance": quant.startswith("w2bb"), **quant_extra},
        "calib": {"name": calib, "method": "rtn" if calib == "rtn" else "blockwise",
                  "nsamples": nsamples, "seqlen": 256, "seed": 2, "epochs": 0,
                  "components": components},
        "eval": {"seqlen": 512, "max_windows": windows, "datasets": [{"name": "wiki"}]},
    }
    digest = json.dumps(config, sort_keys=True)
    return {"config": config, "config_hash": digest, "status": "ok",
            "metrics": {"ppl/wiki": ppl}, "timings": {"calibration_s": 1.0}}


def test_bits_label_what_ran(table: Any) -> None:
    assert table.bits(record(1.0)["config"]) == "W4A4"
    assert table.bits(record(1.0, a_bits=16)["config"]) == "W4A16"
    assert table.bits(record(1.0, w_bits=16)["config"]) == "W16A4"
    assert table.bits(record(1.0, quant="w2bb-a16", w_bits=2, a_bits=16)["config"]) == "W2*A16"
    assert "overrides" in table.details(record(1.0, a_bits=16)["config"])
    assert "overrides" not in table.details(record(1.0)["config"])


def test_a16_override_never_fills_a_w4a4_cell(table: Any) -> None:
    lines, _ = table.grid_table([record(18.49, a_bits=16)])
    w4a4 = next(line for line in lines if line.startswith("| W4A4 |"))
    w4a16 = next(line for line in lines if line.startswith("| W4A16"))
    assert "18.49" not in w4a4
    assert "18.49" in w4a16


def test_off_budget_and_clipped_runs(table: Any) -> None:
    runs = [record(31.27, nsamples=64), record(29.87, a_clip=0.9)]
    lines, legend = table.grid_table(runs)
    w4a4 = next(line for line in lines if line.startswith("| W4A4 |"))
    assert "31.27[1]" in w4a4 and "29.87" not in w4a4  # a_clip runs are variants, not grid cells
    assert legend == ["[1] calibrated on 64×256 (not the table's 8×256)"]
    lines, legend = table.grid_table([record(31.0, nsamples=64), record(32.0)])
    assert "32 |" in next(line for line in lines if line.startswith("| W4A4 |")) and not legend


def test_baselines_need_the_same_protocol(table: Any, tmp_path: Path) -> None:
    store = tmp_path / "runs.jsonl"
    rows = [record(98.48, calib="abq", rotation=False), record(150.0, calib="rtn", windows=20),
            record(50.0, calib="abq")]
    store.write_text("".join(json.dumps(r) + "\n" for r in rows))
    found = table.baselines([store])
    assert [r["metrics"]["ppl/wiki"] for r in found if r["_source"] == str(store)] == [98.48]


def test_a_run_stored_twice_counts_once(table: Any) -> None:
    first, again = record(98.48, calib="abq", rotation=False), record(98.5, calib="abq",
                                                                    rotation=False)
    again["config_hash"] = "another hash after a new config key"
    lines, _ = table.grid_table([first, again, record(85.96, calib="abq", rotation=False) | {
        "config": {**first["config"], "calib": {**first["config"]["calib"], "seed": 3}}}])
    w4a4 = next(line for line in lines if line.startswith("| W4A4 |"))
    assert "(n=2)" in w4a4


def gptq_record(ppl: float, grid: str | None, seed: int = 2) -> dict[str, Any]:
    run = record(ppl)
    gptq = {"enabled": True} if grid is None else {"enabled": True, "grid": grid}
    run["config"]["calib"] = {**run["config"]["calib"], "seed": seed,
                              "components": {**run["config"]["calib"]["components"],
                                             "gptq": gptq}}
    run["config_hash"] = json.dumps(run["config"], sort_keys=True)
    return run


def test_minmax_gptq_is_labelled_and_mse_preferred(table: Any) -> None:
    old, mse = gptq_record(33.4, "minmax"), gptq_record(29.9, "mse")
    assert "GPTQ min-max grid" in table.details(old["config"])
    assert "GPTQ min-max grid" in table.details(gptq_record(33.4, None)["config"])  # no key: old
    assert "min-max" not in table.details(mse["config"])
    lines, legend = table.grid_table([old, mse])
    w4a4 = next(line for line in lines if line.startswith("| W4A4 |"))
    assert "29.9" in w4a4 and "33.4" not in w4a4 and not legend
    lines, legend = table.grid_table([old])  # only min-max measured: shown, and marked
    assert "33.4[1]" in next(line for line in lines if line.startswith("| W4A4 |"))
    assert legend and "min-max" in legend[0]


def test_the_same_run_in_two_stores_counts_once(table: Any) -> None:
    one = record(98.48, calib="abq", rotation=False) | {"_source": "a", "finished": "1"}
    two = record(98.48, calib="abq", rotation=False) | {"_source": "b", "finished": "2"}
    lines, _ = table.grid_table([one, two])
    w4a4 = next(line for line in lines if line.startswith("| W4A4 |"))
    assert "98.48" in w4a4 and "n=2" not in w4a4
