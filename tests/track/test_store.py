"""Results store: config hash, atomic result.json, concurrent appends, ok-record lookup."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path
from typing import Any

import torch

from abqlab.track.environment import environment, package_versions
from abqlab.track.store import (
    append_record,
    config_hash,
    has_ok_record,
    read_records,
    write_json_atomic,
)

CONFIG: dict[str, Any] = {
    "model": {"name": "smollm2-2layer", "num_hidden_layers": 2},
    "quant": {"w_bits": 4, "a_bits": 8, "skip": []},
    "calib": {"method": "rtn"},
    "seed": 0,
    "logger": {"name": "wandb", "mode": "offline"},
    "results_store": "results/runs.jsonl",
    "skip_done": False,
    "experiment": "default",
}


def test_config_hash_is_16_hex_and_stable_under_key_order() -> None:
    digest = config_hash(CONFIG)
    assert len(digest) == 16 and int(digest, 16) >= 0
    reordered = dict(reversed(list(CONFIG.items())))
    reordered["quant"] = dict(reversed(list(CONFIG["quant"].items())))
    assert config_hash(reordered) == digest


def test_config_hash_ignores_where_and_how_a_run_is_recorded() -> None:
    digest = config_hash(CONFIG)
    changed = {
        **CONFIG,
        "logger": {"name": "none", "mode": "disabled"},
        "results_store": "/elsewhere/runs.jsonl",
        "skip_done": True,
        "experiment": "table3",
    }
    assert config_hash(changed) == digest
    without = {k: v for k, v in CONFIG.items() if k not in ("logger", "results_store")}
    assert config_hash(without) == digest


def test_config_hash_changes_with_what_is_computed() -> None:
    digest = config_hash(CONFIG)
    assert config_hash({**CONFIG, "seed": 1}) != digest
    assert config_hash({**CONFIG, "quant": {**CONFIG["quant"], "w_bits": 3}}) != digest
    assert config_hash({**CONFIG, "model": {**CONFIG["model"], "num_hidden_layers": 3}}) != digest


def test_composed_configs_hash_equal_across_logger_choices() -> None:
    from abq_helpers import compose_run
    from omegaconf import OmegaConf

    def digest(*overrides: str) -> str:
        return config_hash(OmegaConf.to_container(compose_run(overrides), resolve=True))

    base = digest("quant=w4a8")
    assert digest("quant=w4a8", "logger=none", "results_store=/tmp/x.jsonl") == base
    assert digest("quant=w4a16") != base


def test_write_json_atomic_leaves_only_the_file(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "result.json"
    write_json_atomic(target, {"a": 1, "path": Path("/x")})
    write_json_atomic(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert sorted(p.name for p in target.parent.iterdir()) == ["result.json"]


def test_append_and_read_records_skip_a_torn_line(tmp_path: Path) -> None:
    store = tmp_path / "deep" / "runs.jsonl"
    assert list(read_records(store)) == []
    append_record(store, {"config_hash": "a", "status": "failed"})
    append_record(store, {"config_hash": "b", "status": "ok", "value": float("nan")})
    with open(store, "a", encoding="utf-8") as handle:
        handle.write('{"config_hash": "c", "sta')  # a crash mid-write
    records = list(read_records(store))
    assert [r["config_hash"] for r in records] == ["a", "b"]
    assert has_ok_record(store, "b")
    assert not has_ok_record(store, "a")  # failed only
    assert not has_ok_record(store, "c")
    assert not has_ok_record(tmp_path / "none.jsonl", "b")


def _writer(store: str, worker: int, count: int) -> None:
    for i in range(count):
        # big records: one line is far beyond PIPE_BUF, so only the lock keeps lines whole
        append_record(Path(store), {"worker": worker, "i": i, "pad": "x" * 200_000})


def test_concurrent_appends_from_processes_stay_valid_json_lines(tmp_path: Path) -> None:
    store = tmp_path / "runs.jsonl"
    workers, count = 4, 15
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(store), w, count)) for w in range(workers)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    lines = store.read_bytes().split(b"\n")
    assert lines[-1] == b""
    records = [json.loads(line) for line in lines[:-1]]  # every line parses
    assert len(records) == workers * count
    for worker in range(workers):
        assert sorted(r["i"] for r in records if r["worker"] == worker) == list(range(count))
    assert all(len(r["pad"]) == 200_000 for r in records)


def test_environment_records_versions_device_and_commit() -> None:
    env = environment(torch.device("cpu"))
    assert set(env) >= {"python", "platform", "device", "packages", "git_commit"}
    assert env["device"].startswith("cpu")
    assert env["packages"]["torch"] in (torch.__version__, torch.__version__.split("+")[0])
    assert package_versions()["abqlab"] is not None
    commit = env["git_commit"]
    assert commit is None or len(commit.removesuffix("+dirty")) == 40


def test_append_after_a_torn_line_starts_a_new_line(tmp_path: Path) -> None:
    store = tmp_path / "runs.jsonl"
    append_record(store, {"config_hash": "a", "status": "ok"})
    with open(store, "a", encoding="utf-8") as handle:
        handle.write('{"config_hash": "torn", "sta')  # a writer died mid-line
    append_record(store, {"config_hash": "b", "status": "ok"})
    assert [r["config_hash"] for r in read_records(store)] == ["a", "b"]


def test_ok_record_is_the_latest_ok_one(tmp_path: Path) -> None:
    from abqlab.track.store import ok_record

    store = tmp_path / "runs.jsonl"
    append_record(store, {"config_hash": "a", "status": "ok", "metrics": {"m": 1}})
    append_record(store, {"config_hash": "a", "status": "failed"})
    append_record(store, {"config_hash": "a", "status": "ok", "metrics": {"m": 2}})
    assert ok_record(store, "a")["metrics"] == {"m": 2}
    assert ok_record(store, "b") is None


def test_hash_ignores_run_bookkeeping_keys() -> None:
    split = {**CONFIG, "calib": {"method": "rtn", "data": {"name": "wiki"}}}  # today's layout
    digest = config_hash(split)
    extra = {**split, "resume": False, "objective": "ppl/c4", "diagnostics": {"enabled": False},
             "data": {"name": "alias"}}
    assert config_hash(extra) == digest


def test_configs_match_records_made_before_fields_were_added(tmp_path: Path) -> None:
    """A record hashed before the format and clip fields existed is found for a config that
    leaves them at their no-op values, and not for one that uses them."""
    from abqlab.track.store import known_hashes, ok_record

    old = {**CONFIG, "calib": {"method": "rtn"}}  # the layout before those fields
    now = {**CONFIG, "quant": {**CONFIG["quant"], "w_format": "int", "a_format": "int",
                               "w_scale_rule": "none", "kv_format": "int",
                               "kv_granularity": "token", "a_clip": 1.0},
           "calib": {"method": "rtn", "lorc": {"rank": 0, "ranks": {}, "factor_bits": 8}}}
    assert config_hash(now) != config_hash(old)
    store = tmp_path / "runs.jsonl"
    append_record(store, {"config_hash": config_hash(old), "status": "ok", "metrics": {"m": 1}})
    assert ok_record(store, known_hashes(now))["metrics"] == {"m": 1}
    clipped = {**now, "quant": {**now["quant"], "a_clip": 0.9}}
    fp8 = {**now, "quant": {**now["quant"], "a_format": "fp8_e4m3"}}
    assert known_hashes(clipped)[0] == config_hash(clipped)
    assert ok_record(store, known_hashes(clipped)) is None
    assert ok_record(store, known_hashes(fp8)) is None


def test_a_record_from_before_the_data_split_hashes_its_data() -> None:
    """Old records carry one top-level ``data`` and no ``calib.data``: that data is what they
    computed on, so it stays in their hash (recomputed hashes equal the recorded ones)."""
    old = {**CONFIG, "data": {"name": "wiki", "test_every": 10}}
    other = {**CONFIG, "data": {"name": "wiki", "test_every": 7}}
    assert config_hash(old) != config_hash(other)
    assert config_hash({**old, "data": {**old["data"], "skip_test_docs": 0}}) == config_hash(old)
