"""Embedded Wikipedia text: a deterministic, disjoint train/test split; source dispatch."""

from __future__ import annotations

import json

import pytest

from abqlab.config import DataConfig
from abqlab.data import sources
from abqlab.data.hf import NetworkUnavailableError, _looks_offline
from abqlab.data.wiki import wiki_articles, wiki_json_path


@pytest.fixture(scope="module")
def entries() -> dict[str, dict]:
    with open(wiki_json_path(), encoding="utf-8") as handle:
        return json.load(handle)


def test_split_is_every_tenth_sorted_title(entries: dict[str, dict]) -> None:
    titles = sorted(entries)
    expected_test = [
        entries[t]["extract"].strip()
        for t in titles[::10]
        if (entries[t].get("extract") or "").strip()
    ]
    test = wiki_articles("test")
    assert list(test) == expected_test
    train = wiki_articles("train")
    assert len(test) + len(train) == sum(
        1 for t in titles if (entries[t].get("extract") or "").strip()
    )
    assert 950 <= len(test) <= 1010 and len(train) > 8 * len(test)


def test_split_is_deterministic_and_test_every_matters() -> None:
    assert wiki_articles("test") == wiki_articles("test", 10)
    five = wiki_articles("test", 5)
    assert len(five) == pytest.approx(2 * len(wiki_articles("test")), rel=0.02)


def test_unknown_split_rejected() -> None:
    with pytest.raises(ValueError, match="split 'validation': allowed: train, test"):
        wiki_articles("validation")


def test_articles_truncates_test_docs_and_joins_with_blank_lines() -> None:
    cfg = DataConfig(max_test_docs=3)
    docs = sources.articles(cfg, "test")
    assert docs == wiki_articles("test")[:3]
    assert sources.split_text(cfg, "test") == "\n\n".join(docs)
    assert len(sources.articles(cfg, "train")) == len(wiki_articles("train"))  # test only


def test_unknown_source_rejected() -> None:
    with pytest.raises(ValueError, match="data.source=ftp: allowed: embedded, hf, text"):
        sources.articles(DataConfig(source="ftp"), "test")


def test_hf_source_offline_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    def offline(*args: object, **kwargs: object) -> None:
        raise ConnectionError("Couldn't reach 'wikitext' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    cfg = DataConfig(name="wikitext2", source="hf", hf_path="wikitext", hf_name="raw")
    with pytest.raises(NetworkUnavailableError, match="data=wikitext2: 'wikitext' needs"):
        sources.articles(cfg, "test")


def test_hf_source_reads_the_text_field(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    seen = {}

    def fake(path: str, name: str | None, split: str) -> list[dict]:
        seen.update(path=path, name=name, split=split)
        return [{"body": "a"}, {"body": ""}, {"body": "  "}, {"body": "b"}]

    monkeypatch.setattr(datasets, "load_dataset", fake)
    cfg = DataConfig(
        source="hf", hf_path="p", hf_name="n", test_split="validation", text_field="body"
    )
    assert sources.articles(cfg, "test") == ("a", "b")
    assert seen == {"path": "p", "name": "n", "split": "validation"}


def test_offline_classifier() -> None:
    assert _looks_offline(ConnectionError("Failed to connect"))
    assert _looks_offline(OSError("We couldn't reach huggingface.co"))
    assert not _looks_offline(ValueError("Unknown split 'tset'"))
