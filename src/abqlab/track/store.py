"""The results store: one JSON line per run, appended atomically, keyed by config hash."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Keys that say where and how a run is recorded, not what it computes (``data``: an alias).
NON_SEMANTIC = (
    "logger",
    "results_store",
    "skip_done",
    "experiment",
    "resume",
    "objective",
    "diagnostics",
    "data",
)
# DataConfig fields added after the first stores were recorded, with the value that changes
# nothing: left at it, they are not hashed (older records keep their keys).
NEW_DATA_FIELDS = {"path": None, "train_path": None, "test_path": None, "skip_test_docs": 0}
# QuantConfig fields added later (mixed precision): not hashed while they change nothing
# (no per-layer widths, no budget target); budget fields added later, at their default.
NEW_BUDGET_FIELDS = {"weights": "rtn"}


def without_unused_mixed_precision(quant: Any) -> Any:
    """``quant`` without an empty ``layer_bits`` and a ``budget`` with no target (and without
    the budget's ``cache_dir``, which changes where, not what, or later fields at defaults)."""
    if not isinstance(quant, dict):
        return quant
    budget = quant.get("budget")
    if isinstance(budget, dict):
        budget = {k: v for k, v in budget.items() if k != "cache_dir"
                  and not (k in NEW_BUDGET_FIELDS and v == NEW_BUDGET_FIELDS[k])}
        quant = {**quant, "budget": budget}
    unused = isinstance(budget, dict) and budget.get("avg_bits") is None and (
        budget.get("bytes") is None
    )
    return {
        k: v
        for k, v in quant.items()
        if not (k == "layer_bits" and not v) and not (k == "budget" and unused)
    }


def hash_view(config: dict[str, Any]) -> dict[str, Any]:
    """The semantic part of a resolved config, as hashed.

    A run that calibrates and evaluates on one and the same dataset (``calib.data`` resolved equal
    to the only entry of ``eval.datasets``) is viewed in the layout from before that split, one
    top-level ``data``, so that stores recorded earlier keep their keys for ``skip_done``.
    """
    view = {k: v for k, v in config.items() if k not in NON_SEMANTIC}
    if "quant" in view:
        view["quant"] = without_unused_mixed_precision(view["quant"])
    calib, evaluation = view.get("calib"), view.get("eval")
    if isinstance(config.get("data"), dict) and not (isinstance(calib, dict) and "data" in calib):
        view["data"] = without_new_data_fields(config["data"])  # recorded before the split
    if not (isinstance(calib, dict) and isinstance(evaluation, dict)):
        return view
    data, datasets = calib.get("data"), evaluation.get("datasets")
    if isinstance(data, dict) and datasets == [data]:
        view["calib"] = {k: v for k, v in calib.items() if k != "data"}
        view["eval"] = {k: v for k, v in evaluation.items() if k != "datasets"}
        view["data"] = without_new_data_fields(data)
    return view


def without_new_data_fields(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` without the fields added since the first stores, where they change nothing."""
    return {k: v for k, v in data.items() if k not in NEW_DATA_FIELDS or v != NEW_DATA_FIELDS[k]}


def config_hash(config: dict[str, Any]) -> str:
    """Stable 16-hex-digit hash of the semantic part of a resolved config (:func:`hash_view`)."""
    return digest_of(hash_view(config))


def digest_of(view: dict[str, Any]) -> str:
    """The 16-hex-digit SHA-256 of a hash view."""
    text = json.dumps(view, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# Config fields added after stores were recorded, oldest group first, each with the value that
# changes nothing. A record made before a group existed was hashed without its fields, so a config
# that leaves them at these values also matches that older hash (see :func:`known_hashes`).
ADDED_FIELD_GROUPS: tuple[dict[tuple[str, str], Any], ...] = (
    {  # number formats and LoRC
        ("quant", "w_format"): "int", ("quant", "a_format"): "int",
        ("quant", "w_scale_rule"): "none", ("quant", "kv_format"): "int",
        ("quant", "kv_granularity"): "token",
        ("calib", "lorc"): {"rank": 0, "ranks": {}, "factor_bits": 8},
    },
    {("quant", "a_clip"): 1.0},  # rotations: per-token activation clip ratio
)


def known_hashes(config: dict[str, Any]) -> list[str]:
    """This config's hash, then the hashes it had before each group of added fields existed
    (only where it leaves those fields at their no-op values)."""
    view = hash_view(config)
    hashes = [digest_of(view)]
    for start in range(len(ADDED_FIELD_GROUPS) - 1, -1, -1):
        added = {k: v for group in ADDED_FIELD_GROUPS[start:] for k, v in group.items()}
        if all(view.get(g, {}).get(key, value) == value for (g, key), value in added.items()):
            older = {g: dict(v) if isinstance(v, dict) else v for g, v in view.items()}
            for g, key in added:
                older.get(g, {}).pop(key, None)
            hashes.append(digest_of(older))
    return list(dict.fromkeys(hashes))


def write_json_atomic(path: Path, record: dict[str, Any]) -> None:
    """Write ``record`` to ``path`` via a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(record, handle, indent=2, default=str)
    os.replace(tmp, path)


def append_record(store: Path, record: dict[str, Any]) -> None:
    """Append one line under an exclusive lock, in a single write, flushed to disk.

    Should the file end in a torn line (a writer died mid-write), the record starts on a new
    line, so the torn one cannot swallow it.
    """
    store.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, default=str) + "\n").encode()
    fd = os.open(store, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line
        os.write(fd, line)
        os.fsync(fd)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def read_records(store: Path) -> Iterator[dict[str, Any]]:
    """Every record in the store (skipping a torn last line, should one exist)."""
    if not store.exists():
        return
    with open(store, encoding="utf-8") as handle:
        for line in handle:
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue


def ok_record(store: Path, digest: str | list[str]) -> dict[str, Any] | None:
    """The latest record with this config hash (or any of these) that finished ok, if any."""
    wanted = {digest} if isinstance(digest, str) else set(digest)
    found = None
    for record in read_records(store):
        if record.get("config_hash") in wanted and record.get("status") == "ok":
            found = record
    return found


def has_ok_record(store: Path, digest: str) -> bool:
    """Whether a run with this config hash already finished ok."""
    return ok_record(store, digest) is not None
