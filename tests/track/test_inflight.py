"""Markers of runs in flight: written at start, removed with the record; adoption of checkpoints."""

from __future__ import annotations

from pathlib import Path

from abqlab.track import inflight


def test_marker_lifecycle(tmp_path: Path) -> None:
    store = tmp_path / "runs.jsonl"
    assert inflight.previous_run_dir(store, "abc") is None
    inflight.mark_started(store, "abc", tmp_path / "run1")
    assert inflight.marker_path(store, "abc").parent.name == "runs.jsonl.inflight"
    assert inflight.previous_run_dir(store, "abc") == tmp_path / "run1"
    assert inflight.previous_run_dir(store, "other") is None
    inflight.mark_finished(store, "abc")
    assert inflight.previous_run_dir(store, "abc") is None
    assert not inflight.marker_path(store, "abc").parent.exists()  # no clutter left
    inflight.mark_finished(store, "abc")  # idempotent


def test_adopt_moves_checkpoints_into_the_new_run(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    (old / "calib" / "resume").mkdir(parents=True)
    (old / "calib" / "block_000.pt").write_bytes(b"learned")
    (old / "calib" / "resume" / "block_000.pt").write_bytes(b"state")
    (old / "calib" / "resume" / "block_001.pt.tmp").write_bytes(b"half-written")
    assert inflight.adopt_checkpoints(old, new) == 2
    assert (new / "calib" / "block_000.pt").read_bytes() == b"learned"
    assert (new / "calib" / "resume" / "block_000.pt").read_bytes() == b"state"
    assert not (new / "calib" / "resume" / "block_001.pt.tmp").exists()
    assert inflight.adopt_checkpoints(old, new) == 0  # nothing left to move
    assert inflight.adopt_checkpoints(new, new) == 0  # same dir: nothing to do
    assert inflight.adopt_checkpoints(tmp_path / "missing", new) == 0
