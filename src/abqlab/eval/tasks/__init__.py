"""Local lm-eval tasks, built at run time from data shipped on PyPI (no network needed).

Names users write in ``eval.tasks`` → builders. Generated JSONL lives in the cache
(``$ABQLAB_CACHE`` or ``~/.cache/abqlab``/lmeval); generated YAML in the run's work dir.
"""

from __future__ import annotations

from collections.abc import Callable

from abqlab.eval.tasks import text, zeroshot
from abqlab.eval.tasks.common import BuildContext, TaskBuild

# The six zero-shot tasks ABQ-LLM / OmniQuant report, in their table order.
ABQ_SIX = ("piqa", "arc_easy", "arc_challenge", "boolq", "hellaswag", "winogrande")


def _zeroshot(name: str) -> Callable[[BuildContext], TaskBuild]:
    return lambda ctx: zeroshot.build(name, ctx)


LOCAL_TASKS: dict[str, Callable[[BuildContext], TaskBuild]] = {
    "wiki_ppl": text.build_documents,
    "wiki_ppl_windows": text.build_windows,
    **{name: _zeroshot(name) for name in zeroshot.SOURCES},
}

__all__ = ["ABQ_SIX", "LOCAL_TASKS", "BuildContext", "TaskBuild"]
