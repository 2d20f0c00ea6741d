"""Shared helpers of the kernel experiments: timing, copy bandwidth, environment record and
Markdown tables."""

from __future__ import annotations

import datetime as dt
import math
import platform
import statistics
import subprocess
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]


def graph_replay_ms(graph: torch.cuda.CUDAGraph, reps: int) -> list[float]:
    """Milliseconds of each of ``reps`` replays of a captured CUDA graph (CUDA events)."""
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return times


def copy_bandwidth(nbytes: int = 1 << 30, reps: int = 10) -> float:
    """Device-to-device copy bandwidth in GB/s (read + write bytes), 4 copies per graph."""
    src = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    dst.copy_(src)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(4):
            dst.copy_(src)
    ms = statistics.median(graph_replay_ms(graph, reps)) / 4
    del graph, src, dst
    torch.cuda.empty_cache()
    return 2 * nbytes / (ms * 1e-3) / 1e9


def rotated(first: dict[str, torch.Tensor]) -> tuple[list[dict[str, torch.Tensor]], int]:
    """``first`` plus clones so that the copies together exceed 2x L2; bytes of one copy."""
    nbytes = sum(t.numel() * t.element_size() for t in first.values())
    l2 = torch.cuda.get_device_properties(0).L2_cache_size
    n = max(2, math.ceil(2 * l2 / max(nbytes, 1)) + 1)
    return [first] + [{k: t.clone() for k, t in first.items()} for _ in range(n - 1)], nbytes


def _git(*args: str) -> str:
    try:
        res = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return res.stdout.strip() or "unknown"


def env_info() -> dict[str, str]:
    """Device name and versions recorded next to every number."""
    info = {
        "date_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": str(torch.version.cuda),
        "git_commit": _git("rev-parse", "--short", "HEAD"),
        "git_dirty": "yes" if _git("status", "--porcelain", "--untracked-files=no") not in (
            "", "unknown") else "no",
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info |= {
            "device": props.name,
            "capability": f"{props.major}.{props.minor}",
            "sm_count": str(props.multi_processor_count),
            "memory_GiB": f"{props.total_memory / 2**30:.1f}",
            "L2_MiB": f"{props.L2_cache_size / 2**20:.0f}",
        }
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,clocks.max.sm",
                              "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=20)
        info["driver_and_max_sm_clock"] = smi.stdout.strip().splitlines()[0]
    except (OSError, subprocess.TimeoutExpired, IndexError):
        pass
    return info


def md_table(title: str, info: dict[str, str], rows: list[dict[str, object]]) -> str:
    """A Markdown report: environment list, then one table of ``rows``."""
    lines = [f"# {title}", "", *(f"- {k}: {v}" for k, v in info.items()), ""]
    if rows:
        cols = list(rows[0])
        lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"
