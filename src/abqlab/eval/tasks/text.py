"""Rolling-perplexity tasks over the configured held-out text (``data.*``, test split).

``wiki_ppl``: one lm-eval document per article; lm-eval rolls windows of ``eval.seqlen`` tokens
over each, the first token conditioned on the prefix token (BOS, else EOS).
``wiki_ppl_windows``: the documents are exactly the fast-perplexity windows (BOS variant:
BOS + ``seqlen - 1`` tokens, the first ``max_windows``), decoded to text; windows whose text does
not re-encode to the same tokens are dropped (counted in the record). On it, lm-eval's token
perplexity equals ``perplexity(..., bos_id=prefix)`` of :mod:`abqlab.eval.perplexity`.
"""

from __future__ import annotations

from typing import Any

import torch

from abqlab.data.sources import articles, split_text, token_stream
from abqlab.eval.perplexity import eval_windows
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

ROLLING_METRICS = (
    metric("word_perplexity", "weighted_perplexity", False),
    metric("byte_perplexity", "weighted_perplexity", False),
    metric("bits_per_byte", "bits_per_byte", False),
)


def window_documents(
    tokenizer: Any, stream: torch.Tensor, seqlen: int, prefix_id: int, max_windows: int | None
) -> tuple[list[str], torch.Tensor]:
    """Texts of the fast-ppl windows that round-trip through the tokenizer, and those windows.

    Returns the texts and the kept windows [n, seqlen] (each BOS/prefix + ``seqlen - 1`` tokens).
    """
    windows = eval_windows(stream, seqlen, prefix_id)
    if max_windows:
        windows = windows[:max_windows]
    texts, kept = [], []
    for window in windows:
        body = window[1:].tolist()
        text = tokenizer.decode(body, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        if tokenizer(text, add_special_tokens=False).input_ids == body:
            texts.append(text)
            kept.append(window)
    if not kept:
        raise ValueError("no perplexity window survives a decode/encode round trip")
    return texts, torch.stack(kept)


def _rolling_build(
    name: str, key: str, docs: list[str], ctx: BuildContext, record: dict[str, Any]
) -> TaskBuild:
    out = data_cache(ctx.cache_dir) / f"{name}-{ctx.data_cfg.name}-{digest(*docs)}.jsonl"
    write_jsonl(out, ({"text": doc} for doc in docs))
    config = {
        "task": TASK_PREFIX + name,
        **json_dataset(out, ctx.cache_dir),
        "output_type": "loglikelihood_rolling",
        "doc_to_text": "",
        "doc_to_target": "text",
        "metric_list": [dict(m) for m in ROLLING_METRICS],
        "metadata": {"version": TASK_VERSION},
    }
    tokens = [len(ids) for ids in ctx.tokenizer(docs, add_special_tokens=False).input_ids]
    record = {
        "version": TASK_VERSION,
        "data": ctx.data_cfg.name,
        "split": "test",
        "window": ctx.eval_cfg.seqlen,
        "prefix_token_id": ctx.prefix_id,
        **record,
    }
    return TaskBuild(
        name=name,
        key=key,
        config=config,
        record=record,
        doc_tokens=tokens,
        doc_bytes=[len(doc.encode("utf-8")) for doc in docs],
    )


def build_documents(ctx: BuildContext) -> TaskBuild:
    """``wiki_ppl``: one document per held-out article."""
    docs = list(articles(ctx.data_cfg, "test"))
    return _rolling_build("wiki_ppl", ctx.data_cfg.name, docs, ctx, {"documents": len(docs)})


def build_windows(ctx: BuildContext) -> TaskBuild:
    """``wiki_ppl_windows``: the fast-perplexity windows as documents."""
    stream = token_stream(ctx.tokenizer, split_text(ctx.data_cfg, "test"))
    texts, windows = window_documents(
        ctx.tokenizer, stream, ctx.eval_cfg.seqlen, ctx.prefix_id, ctx.eval_cfg.max_windows
    )
    total = eval_windows(stream, ctx.eval_cfg.seqlen, ctx.prefix_id).shape[0]
    asked = min(total, ctx.eval_cfg.max_windows or total)
    record = {"windows": len(texts), "dropped_windows": asked - len(texts)}
    return _rolling_build("wiki_ppl_windows", f"{ctx.data_cfg.name}_windows", texts, ctx, record)
