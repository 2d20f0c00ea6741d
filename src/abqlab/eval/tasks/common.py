"""What every local task shares: the build context, the build result, and the data cache."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from abqlab.config import DataConfig, EvalConfig

# Bump when a builder changes what it writes: the cache key and the recorded version follow.
TASK_VERSION = 1.0
TASK_PREFIX = "abqlab_"


@dataclass(frozen=True)
class BuildContext:
    """Inputs a builder may use; ``prefix_id`` is the token lm-eval puts before rolling text."""

    tokenizer: Any
    data_cfg: DataConfig
    eval_cfg: EvalConfig
    cache_dir: Path
    prefix_id: int


@dataclass
class TaskBuild:
    """One local task, ready for lm-eval.

    ``key`` is the metric suffix (``acc/<key>``); ``doc_tokens`` (rolling tasks only) holds
    each document's token count so token-level perplexity can be derived from lm-eval's sums.
    """

    name: str
    key: str
    config: dict[str, Any]
    record: dict[str, Any]
    doc_tokens: list[int] | None = None
    doc_bytes: list[int] | None = field(default=None)

    @property
    def lm_eval_name(self) -> str:
        return self.config["task"]


def data_cache(cache_dir: Path) -> Path:
    """Folder for extracted JSONL files (and the ``datasets`` Arrow cache beside them)."""
    path = cache_dir / "lmeval"
    path.mkdir(parents=True, exist_ok=True)
    return path


def digest(*parts: bytes | str) -> str:
    """Short sha256 over ``parts`` (the builder version is always mixed in)."""
    sha = hashlib.sha256(f"v{TASK_VERSION}".encode())
    for part in parts:
        sha.update(part.encode() if isinstance(part, str) else part)
    return sha.hexdigest()[:12]


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> Path:
    """Write ``rows`` to ``path`` atomically (temp file + rename); keep an existing file."""
    if path.exists():
        return path
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            for row in rows:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def json_dataset(path: Path, cache_dir: Path) -> dict[str, Any]:
    """lm-eval dataset fields for a local JSONL file (absolute path: never cwd-relative)."""
    return {
        "dataset_path": "json",
        "dataset_kwargs": {
            "data_files": {"test": str(path.resolve())},
            "cache_dir": str((data_cache(cache_dir) / "hf_datasets").resolve()),
        },
        "test_split": "test",
    }


def metric(name: str, aggregation: str, higher_is_better: bool) -> dict[str, Any]:
    return {"metric": name, "aggregation": aggregation, "higher_is_better": higher_is_better}
