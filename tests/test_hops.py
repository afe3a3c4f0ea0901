"""``core/hops.py``: the hop marks a traced round trip leaves (bench_roundtrip.py --hops)."""

from __future__ import annotations

import os
from pathlib import Path

from memvid_mcp.core import hops


def test_marks_land_in_order_only_while_tracing(tmp_path: Path) -> None:
    hops.configure(tmp_path)
    try:
        hops.mark("first")
        hops.mark("second")
    finally:
        hops.configure(None)
    hops.mark("after")  # off: written nowhere
    events = hops.read(tmp_path)
    assert [(pid, label) for _, pid, label in events] == [(os.getpid(), "first"),
                                                          (os.getpid(), "second")]
    assert events[0][0] <= events[1][0]
    assert not hops.enabled()


def test_read_merges_processes_on_one_clock(tmp_path: Path) -> None:
    (tmp_path / "11.hops").write_text("300 late\n100 early\n", encoding="ascii")
    (tmp_path / "22.hops").write_text("200 middle\n", encoding="ascii")
    (tmp_path / "notes.txt").write_text("ignored\n", encoding="ascii")
    assert hops.read(tmp_path) == [(100, 11, "early"), (200, 22, "middle"), (300, 11, "late")]
