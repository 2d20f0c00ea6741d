"""Local text files as a data source (``source: text``): train/test files, or one file split
deterministically into documents, every ``test_every``-th to the test split."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from abqlab.config import DataConfig

PARAGRAPH = re.compile(r"\n\s*\n")


def read_text(path: str) -> str:
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"data.path={path}: allowed: an existing UTF-8 text file")
    return file.read_text(encoding="utf-8")


def documents(text: str) -> tuple[str, ...]:
    """Paragraphs (blank-line separated); a text with fewer than two is split by lines."""
    parts = [p.strip() for p in PARAGRAPH.split(text)]
    parts = [p for p in parts if p]
    if len(parts) < 2:
        parts = [line.strip() for line in text.splitlines() if line.strip()]
    return tuple(parts)


@lru_cache(maxsize=16)
def _split_file(path: str, test_every: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    docs = documents(read_text(path))
    test = tuple(d for i, d in enumerate(docs) if i % test_every == 0)
    train = tuple(d for i, d in enumerate(docs) if i % test_every != 0)
    if not train or not test:
        raise ValueError(
            f"data.path={path}: {len(docs)} document(s) give an empty split at "
            f"test_every={test_every}; use a longer file or train_path/test_path"
        )
    return train, test


def text_articles(cfg: DataConfig, split: str) -> tuple[str, ...]:
    """Documents of ``split`` from the configured files."""
    if cfg.train_path or cfg.test_path:
        path = cfg.test_path if split == "test" else cfg.train_path
        if not path:
            key = "test_path" if split == "test" else "train_path"
            raise ValueError(f"data.{key}=None: the {split} split of data={cfg.name} needs it")
        return documents(read_text(path))
    if cfg.path:
        train, test = _split_file(str(Path(cfg.path).expanduser().resolve()), cfg.test_every)
        return test if split == "test" else train
    raise ValueError(f"data={cfg.name}: source text needs path, or train_path and test_path")


def text_files(cfg: DataConfig) -> list[str]:
    """The files a text source reads (for checks before any model loads)."""
    return [p for p in (cfg.path, cfg.train_path, cfg.test_path) if p]
