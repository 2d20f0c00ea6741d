"""Runs in flight: a marker per config hash beside the results store, so that a run which died
without a record (killed, machine lost) is continued by the next run of the same config.

``<store>.inflight/<hash>.json`` names the run dir of the run in progress. It is written when a
run starts and removed once its record is in the store. A new run of the same config that finds
a marker adopts the old run's calibration checkpoints (``<run_dir>/calib``) before calibrating.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from pathlib import Path

from abqlab.track.store import write_json_atomic

log = logging.getLogger(__name__)


def marker_path(store: Path, digest: str) -> Path:
    return store.with_name(store.name + ".inflight") / f"{digest}.json"


def previous_run_dir(store: Path, digest: str) -> Path | None:
    """The run dir of an earlier run of this config that died without a record, if any."""
    path = marker_path(store, digest)
    try:
        return Path(json.loads(path.read_text())["run_dir"])
    except (OSError, ValueError, KeyError):
        return None


def adopt_checkpoints(previous: Path, run_dir: Path) -> int:
    """Move the earlier run's ``calib/`` files into this run's; returns how many moved."""
    source, target = previous / "calib", run_dir / "calib"
    if previous.resolve() == run_dir.resolve() or not source.is_dir():
        return 0
    moved = 0
    for item in sorted(source.rglob("*")):
        if item.is_file() and not item.name.endswith(".tmp"):
            destination = target / item.relative_to(source)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(item), destination)
            moved += 1
    if moved:
        log.info("resume: adopted %d checkpoint file(s) from %s", moved, previous)
    return moved


def mark_started(store: Path, digest: str, run_dir: Path) -> None:
    payload = {"run_dir": str(run_dir), "pid": os.getpid(), "started": time.time()}
    write_json_atomic(marker_path(store, digest), payload)


def mark_finished(store: Path, digest: str) -> None:
    marker = marker_path(store, digest)
    marker.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        marker.parent.rmdir()  # only when no other run is in flight
