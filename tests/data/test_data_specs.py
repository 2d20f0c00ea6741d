"""Dataset specs (calib.data, eval.datasets) and the local text source."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from abq_helpers import compose_run
from omegaconf import OmegaConf

from abqlab.config import DataConfig
from abqlab.data import sources
from abqlab.data.presets import DataSpecError, preset_names, resolve_data, resolve_datasets
from abqlab.data.text import documents, text_articles
from abqlab.pipeline import recorded_config
from abqlab.track.store import config_hash, hash_view


def test_every_preset_resolves_to_its_own_name() -> None:
    names = preset_names()
    assert {"wiki", "c4", "wikitext2", "text"} <= set(names)
    for name in names:
        assert resolve_data(name).name == name


def test_specs_by_name_shorthand_and_dict() -> None:
    assert resolve_data("wiki") == DataConfig()
    text = resolve_data("text:some/dir/My Book.txt")
    assert (text.source, text.name, text.path) == ("text", "my_book", "some/dir/My Book.txt")
    custom = resolve_data({"preset": "c4", "max_test_docs": 7, "name": "c4small"})
    assert (custom.source, custom.hf_path, custom.max_test_docs, custom.name) == (
        "hf", "allenai/c4", 7, "c4small")
    assert resolve_data({"name": "x", "source": "text", "path": "a.txt"}).path == "a.txt"


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("nope", "c4, text, wiki"),
        ({"preset": "wiki", "bogus": 1}, "Key 'bogus' not in 'DataConfig'"),
        ({"test_every": "often"}, "test_every"),
        (3, "a preset name"),
    ],
)
def test_bad_specs_are_one_line(spec: object, needle: str) -> None:
    with pytest.raises(DataSpecError) as info:
        resolve_data(spec)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_eval_dataset_names_must_be_unique() -> None:
    assert [d.name for d in resolve_datasets(["wiki", "c4"])] == ["wiki", "c4"]
    assert [d.name for d in resolve_datasets("wiki")] == ["wiki"]
    with pytest.raises(DataSpecError, match="repeated: wiki"):
        resolve_datasets(["wiki", {"preset": "c4", "name": "wiki"}])


def test_top_level_data_is_the_resolved_calibration_data() -> None:
    cfg = compose_run(["calib.data={preset: wiki, test_every: 7}", "eval.datasets=[c4]"])
    assert cfg.data["test_every"] == 7 and cfg.data["name"] == "wiki"
    config = recorded_config(cfg)
    assert "data" not in config
    assert config["calib"]["data"]["test_every"] == 7
    assert [d["name"] for d in config["eval"]["datasets"]] == ["c4"]


def test_one_dataset_for_both_hashes_in_the_layout_before_the_split() -> None:
    """The record layout before calib.data / eval.datasets: one top-level ``data`` group, and
    the hash of everything but logger, results_store, skip_done, experiment."""
    config = recorded_config(compose_run(["quant=w4a4"]))
    added = ("resume", "objective", "diagnostics")  # non-semantic keys added since
    legacy = {k: v for k, v in config.items() if k not in added}
    legacy["calib"] = {k: v for k, v in config["calib"].items() if k != "data"}
    legacy["eval"] = {k: v for k, v in config["eval"].items() if k != "datasets"}
    legacy["quant"] = {k: v for k, v in config["quant"].items()
                       if k not in ("budget", "layer_bits")}  # mixed precision, added since
    legacy["data"] = {k: v for k, v in DataConfig().__dict__.items()
                      if k not in ("path", "train_path", "test_path", "skip_test_docs")}
    semantic = {k: v for k, v in legacy.items()
                if k not in ("logger", "results_store", "skip_done", "experiment")}
    old_hash = hashlib.sha256(
        json.dumps(semantic, sort_keys=True, default=str).encode()).hexdigest()[:16]
    assert hash_view(config)["data"] == legacy["data"]
    assert config_hash(config) == old_hash  # stores from before keep their keys


def test_hash_tells_calibration_and_evaluation_data_apart() -> None:
    def digest(*overrides: str) -> str:
        return config_hash(recorded_config(compose_run(overrides)))

    base = digest()
    others = {
        digest("calib.data={preset: wiki, test_every: 7}"),
        digest("eval.datasets=[{preset: wiki, test_every: 7}]"),
        digest("eval.datasets=[wiki,c4]"),
        digest("eval.datasets=[{preset: wiki, skip_test_docs: 5}]"),
    }
    assert base not in others and len(others) == 4
    assert digest("calib.data=wiki", "eval.datasets=[wiki]") == base


def test_documents_are_paragraphs_else_lines() -> None:
    assert documents("a b\n\n  c\nd \n\n\n e") == ("a b", "c\nd", "e")
    assert documents("one\ntwo\n three\n") == ("one", "two", "three")


def write(path: Path, paragraphs: list[str]) -> str:
    path.write_text("\n\n".join(paragraphs), encoding="utf-8")
    return str(path)


def test_one_text_file_splits_deterministically(tmp_path: Path) -> None:
    paragraphs = [f"paragraph number {i}" for i in range(25)]
    cfg = DataConfig(name="t", source="text", path=write(tmp_path / "a.txt", paragraphs))
    test, train = text_articles(cfg, "test"), text_articles(cfg, "train")
    assert test == tuple(paragraphs[::10])
    assert set(train) | set(test) == set(paragraphs) and not set(train) & set(test)
    assert sources.articles(cfg, "test") == test  # through the common entry point
    skipped = DataConfig(name="t", source="text", path=cfg.path, skip_test_docs=1)
    assert sources.articles(skipped, "test") == test[1:]


def test_train_and_test_files(tmp_path: Path) -> None:
    cfg = DataConfig(name="t", source="text", train_path=write(tmp_path / "tr.txt", ["x", "y"]),
                     test_path=write(tmp_path / "te.txt", ["z"]))
    assert text_articles(cfg, "train") == ("x", "y")
    assert text_articles(cfg, "test") == ("z",)
    only_test = DataConfig(name="t", source="text", test_path=cfg.test_path)
    with pytest.raises(ValueError, match="train_path=None"):
        text_articles(only_test, "train")


def test_text_file_too_short_for_a_split(tmp_path: Path) -> None:
    cfg = DataConfig(name="t", source="text", path=write(tmp_path / "s.txt", ["one line"]))
    with pytest.raises(ValueError, match="empty split"):
        text_articles(cfg, "train")


def test_validation_names_the_key_for_a_missing_text_file(tmp_path: Path) -> None:
    from abqlab.validate import ConfigError, check_run

    cfg = compose_run(["model=smollm2-2layer", f"eval.datasets=[wiki,text:{tmp_path}/no.txt]"])
    with pytest.raises(ConfigError, match=r"^eval.datasets \(no\)="):
        check_run(cfg)
    ok = write(tmp_path / "ok.txt", [f"p{i}" for i in range(30)])
    check_run(compose_run(["model=smollm2-2layer", f"calib.data=text:{ok}"]))
    bad = compose_run(["model=smollm2-2layer", "calib.data={preset: wiki, source: ftp}"])
    with pytest.raises(ConfigError, match="allowed: embedded, hf, text"):
        check_run(bad)
    assert OmegaConf.is_interpolation(compose_run([]), "data")
