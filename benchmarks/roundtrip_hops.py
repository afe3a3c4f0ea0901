"""Where a stdio round trip's time goes: each hop, and each process's CPU per call.

``bench_roundtrip.py --hops`` runs the SDK client over stdio (relay, service) with
``MEMVID_HOP_TRACE`` set in all three processes (``core/hops.py``); the client's own marks are
added here by wrapping the SDK's stdio transport. Each call's marks, sorted on the one
monotonic clock, give the hops below (p50 and mean over the calls, ms). Alongside, the CPU
time each process (and the service's event-loop thread) spends per call and its context
switches per call, read from /proc: unlike wall times, those barely move with the machine's
load. Tracing itself adds one small ``write`` per mark (~14 per call).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from memvid_mcp.core import hops

# (label, from mark, to mark), in the order a call crosses them
HOPS = [
    ("client: build + send request", "client.call", "client.send"),
    ("pipe -> relay wakes", "client.send", "relay.read"),
    ("relay: read -> socket", "relay.read", "relay.forward"),
    ("socket -> service wakes, reads line", "relay.forward", "service.read"),
    ("service: parse JSON-RPC", "service.read", "service.parsed"),
    ("SDK dispatch -> our call_tool", "service.parsed", "tool.call"),
    ("argument checks, SDK tool call, thread hop (if any)", "tool.call", "work.start"),
    ("MemoryManager.search", "work.start", "search.done"),
    ("result model + dump", "search.done", "work.end"),
    ("thread hop back to the event loop", "work.end", "work.back"),
    ("result block, SDK output check", "work.back", "tool.done"),
    ("SDK response -> writer task", "tool.done", "service.reply"),
    ("serialise + socket send", "service.reply", "service.sent"),
    ("socket -> relay wakes", "service.sent", "relay.answer"),
    ("relay: socket -> pipe", "relay.answer", "relay.write"),
    ("pipe -> client wakes, reads line", "relay.write", "client.recv"),
    ("client: parse JSON-RPC", "client.recv", "client.parsed"),
    ("client: result model, schema check", "client.parsed", "client.done"),
]


def instrument_sdk_client() -> None:
    """Mark the SDK client's stdio writes and line parses (the client's own hops)."""
    import mcp.client.stdio as stdio

    parse = stdio._parse_line
    create = stdio._create_platform_compatible_process

    def parse_line(line: str) -> Any:
        hops.mark("client.recv")
        message = parse(line)
        hops.mark("client.parsed")
        return message

    async def create_process(*args: Any, **kwargs: Any) -> Any:
        process = await create(*args, **kwargs)
        send = process.stdin.send

        async def marked_send(data: bytes) -> None:
            hops.mark("client.send")
            await send(data)

        process.stdin.send = marked_send
        return process

    stdio._parse_line = parse_line
    stdio._create_platform_compatible_process = create_process


class ProcessCounters:
    """CPU seconds and context switches of a process (and its main thread) from /proc."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def read(self) -> dict[str, float]:
        out = {"cpu": 0.0, "loop cpu": 0.0, "switches": 0.0}
        tick = os.sysconf("SC_CLK_TCK")
        for task in os.listdir(f"/proc/{self.pid}/task"):
            try:
                stat = Path(f"/proc/{self.pid}/task/{task}/stat").read_text()
                status = Path(f"/proc/{self.pid}/task/{task}/status").read_text()
            except OSError:  # the thread ended meanwhile
                continue
            fields = stat.rsplit(")", 1)[1].split()
            cpu = (int(fields[11]) + int(fields[12])) / tick
            out["cpu"] += cpu
            if int(task) == self.pid:
                out["loop cpu"] = cpu
            for line in status.splitlines():
                if line.endswith("ctxt_switches") or "ctxt_switches:" in line:
                    out["switches"] += int(line.split()[1])
        return out


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        found += [int(p) for p in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
    return found


def split_calls(events: list[tuple[int, int, str]]) -> dict[str, list[dict[str, int]]]:
    """Each call's first time at every mark, by mode (from ``client.call:<mode>`` on)."""
    calls: dict[str, list[dict[str, int]]] = {}
    current: dict[str, int] | None = None
    for stamp, _, label in events:
        if label.startswith("client.call:"):
            current = {"client.call": stamp}
            calls.setdefault(label.split(":", 1)[1], []).append(current)
        elif current is not None:
            current.setdefault(label, stamp)
    return calls


def hop_table(calls: dict[str, list[dict[str, int]]]) -> list[str]:
    modes = sorted(calls)
    rows = ["| hop | " + " | ".join(f"{m} p50 / mean ms" for m in modes) + " |",
            "|---|" + "---|" * len(modes)]

    def cell(values: list[float]) -> str:
        if not values:
            return "-"
        return f"{statistics.median(values):.3f} / {statistics.fmean(values):.3f}"

    for name, start, end in HOPS:
        cells = [cell([(c[end] - c[start]) / 1e6 for c in calls[m] if start in c and end in c])
                 for m in modes]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    totals = [cell([(c["client.done"] - c["client.call"]) / 1e6 for c in calls[m]
                    if "client.done" in c]) for m in modes]
    rows.append("| **client to client** | " + " | ".join(totals) + " |")
    outside = [cell([(c["client.done"] - c["client.call"]
                      - (c["search.done"] - c["work.start"])) / 1e6 for c in calls[m]
                     if {"client.done", "search.done", "work.start"} <= c.keys()])
               for m in modes]
    rows.append("| **all but the search** | " + " | ".join(outside) + " |")
    return rows


async def run(client: Any, calls: dict[str, Callable[[int], Any]], count: int,
              service_pid: int) -> list[str]:
    """Time ``count`` calls of each kind with marks on; the CPU table's rows."""
    relay = ProcessCounters(_children(os.getpid())[0])
    service = ProcessCounters(service_pid)
    rows = ["| call | client CPU | relay CPU | service CPU (event loop) | "
            "context switches client / relay / service |", "|---|---|---|---|---|"]
    for mode, make in calls.items():
        c0, r0, s0 = time.process_time(), relay.read(), service.read()
        x0 = _switches(os.getpid())
        for i in range(count):
            hops.mark(f"client.call:{mode}")
            await make(i)
            hops.mark("client.done")
            await asyncio.sleep(0.001)  # let stragglers land before the next call's marks
        c1, r1, s1 = time.process_time(), relay.read(), service.read()
        x1 = _switches(os.getpid())

        def per(a: float, b: float) -> str:
            return f"{(b - a) / count * 1e3:.2f}"

        rows.append(f"| {mode} | {per(c0, c1)} ms | {per(r0['cpu'], r1['cpu'])} ms | "
                    f"{per(s0['cpu'], s1['cpu'])} ({per(s0['loop cpu'], s1['loop cpu'])}) ms | "
                    f"{(x1 - x0) / count:.1f} / "
                    f"{(r1['switches'] - r0['switches']) / count:.1f} / "
                    f"{(s1['switches'] - s0['switches']) / count:.1f} |")
    return rows


def _switches(pid: int) -> float:
    return ProcessCounters(pid).read()["switches"]


def trace_directory() -> str:
    directory = tempfile.mkdtemp(prefix="memvid-hops-")
    hops.configure(directory)
    return directory
