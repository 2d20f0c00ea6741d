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

# Keys that say where and how a run is recorded, not what it computes.
NON_SEMANTIC = ("logger", "results_store", "skip_done", "experiment")


def config_hash(config: dict[str, Any]) -> str:
    """Stable 16-hex-digit hash of the semantic part of a resolved config."""
    semantic = {k: v for k, v in config.items() if k not in NON_SEMANTIC}
    text = json.dumps(semantic, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def write_json_atomic(path: Path, record: dict[str, Any]) -> None:
    """Write ``record`` to ``path`` via a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(record, handle, indent=2, default=str)
    os.replace(tmp, path)


def append_record(store: Path, record: dict[str, Any]) -> None:
    """Append one line under an exclusive lock, in a single write, flushed to disk."""
    store.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, default=str) + "\n").encode()
    fd = os.open(store, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
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


def has_ok_record(store: Path, digest: str) -> bool:
    """Whether a run with this config hash already finished ok."""
    return any(
        r.get("config_hash") == digest and r.get("status") == "ok" for r in read_records(store)
    )
