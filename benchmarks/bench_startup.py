"""Start-up latency of the stdio MCP server, as an MCP client sees it.

Spawns ``python -m memvid_mcp --data-dir DIR`` (what an MCP client config launches) with the
SDK's stdio client and measures, from just before the process is spawned:

- ``initialize``: the legacy handshake answered (Claude Desktop / Cursor time out at 60 s);
- ``tools/list``: the tool list answered;
- ``first search``: a ``memory_search`` answered (opens the store; the model may still load);
- the server's CPU time (user + system) when ``initialize`` was answered, which depends far
  less than wall time on how busy the machine is.

Run: ``python benchmarks/bench_startup.py [--runs 7] [--embeddings]``. Prints one line per run
and min / median / max. The first (cold) run is reported separately: it may compile bytecode.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio
from mcp import Client, StdioServerParameters


def _child_cpu_seconds() -> float:
    """User + system CPU seconds used so far by this process's children (the server).

    Wall-clock start-up depends on how busy the machine is; CPU time much less so.
    """
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid():  # ppid
            total += (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
    return total


async def one_run(data_dir: Path, embeddings: bool) -> tuple[float, float, float, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMVID_")}
    env["MEMVID_EMBEDDINGS"] = "1" if embeddings else "0"
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "memvid_mcp", "--data-dir", str(data_dir)],
        env=env,
        cwd=str(data_dir),
    )
    with anyio.fail_after(120):
        start = time.perf_counter()
        async with Client(params, mode="legacy") as client:  # type: ignore[arg-type]
            initialized = time.perf_counter() - start
            cpu = _child_cpu_seconds() if sys.platform == "linux" else float("nan")
            await client.list_tools()
            listed = time.perf_counter() - start
            result = await client.call_tool("memory_search", {"query": "start-up probe"})
            searched = time.perf_counter() - start
            assert not result.is_error, result.content
    return initialized, listed, searched, cpu


def _summary(name: str, values: list[float]) -> str:
    return (
        f"{name:<14} min {min(values) * 1000:7.1f} ms   median "
        f"{statistics.median(values) * 1000:7.1f} ms   max {max(values) * 1000:7.1f} ms"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--embeddings", action="store_true", help="let the model load too")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        cold = await one_run(data_dir, args.embeddings)
        print(f"cold run: initialize {cold[0] * 1000:.1f} ms, tools/list {cold[1] * 1000:.1f} ms, "
              f"first search {cold[2] * 1000:.1f} ms")  # fmt: skip
        runs = []
        for i in range(args.runs):
            run = await one_run(data_dir, args.embeddings)
            runs.append(run)
            print(f"run {i + 1}: initialize {run[0] * 1000:.1f} ms, tools/list "
                  f"{run[1] * 1000:.1f} ms, first search {run[2] * 1000:.1f} ms, "
                  f"server CPU at initialize {run[3] * 1000:.0f} ms")  # fmt: skip
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {args.runs} warm runs:")
    print(_summary("initialize", [r[0] for r in runs]))
    print(_summary("tools/list", [r[1] for r in runs]))
    print(_summary("first search", [r[2] for r in runs]))
    print(_summary("CPU at init", [r[3] for r in runs]))
    print(f"load average {os.getloadavg()[0]:.2f} (wall times grow with it; CPU time much less)")


if __name__ == "__main__":
    anyio.run(main)
