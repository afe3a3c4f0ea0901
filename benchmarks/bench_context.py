"""Wall time of ``memvid-mcp context`` (the SessionStart hook) with the service warm.

A client session is connected first (``memvid-mcp`` over stdio: the relay starts the per-user
service, which then holds the scopes open), ``--memories`` memories are stored through it
(a tenth pinned, a third decisions or preferences), and ``memvid-mcp context`` is then run
``--runs`` times as a hook runs it: a new process, which sends the command to the service.
Prints each run's wall time and min / median / max; the target is under 300 ms. The same
interpreter starting and doing nothing (``python -c pass``) is timed alternately as the
baseline: on a busy machine it is most of the figure.

Run: ``python benchmarks/bench_context.py [--memories 1000] [--runs 15]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from memvid_mcp.client.stdio_peer import StdioPeer, structured

TARGET_MS = 300.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--memories", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="mvctx-") as tmp:
        root = Path(tmp)
        repo, data, run_dir = root / "repo", root / "data", root / "run"
        (repo / ".git").mkdir(parents=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MEMVID_")}
        env.update(MEMVID_EMBEDDINGS="0", MEMVID_RUN_DIR=str(run_dir),
                   MEMVID_SERVICE_IDLE="30")
        command = [sys.executable, "-m", "memvid_mcp", "--data-dir", str(data)]
        peer = StdioPeer(command, env=env, cwd=repo, name="bench-context")
        try:
            kinds = ["decision", "preference", "note", "fact", "note", "note"]
            for n in range(args.memories):
                structured(peer.tool(
                    "memory_store", text=f"memory {n}: " + "some words about the project " * 8,
                    kind=kinds[n % len(kinds)], pinned=n % 10 == 0))
            times, bare = [], []
            for run in range(args.runs):
                start = time.perf_counter()
                subprocess.run([sys.executable, "-c", "pass"], env=env, check=True)
                bare.append((time.perf_counter() - start) * 1000)
                start = time.perf_counter()
                out = subprocess.run([*command, "context"], env=env, cwd=repo,
                                     capture_output=True, text=True, timeout=60)
                elapsed = (time.perf_counter() - start) * 1000
                if out.returncode != 0 or "pinned" not in out.stdout:
                    raise SystemExit(f"context failed: {out.returncode} {out.stderr[-500:]}")
                times.append(elapsed)
                print(f"run {run + 1:2d}: {elapsed:7.1f} ms ({len(out.stdout)} characters; "
                      f"python -c pass {bare[-1]:.1f} ms)")
        finally:
            peer.close()
            subprocess.run([*command, "service", "--stop"], env=env, capture_output=True,
                           timeout=60)
            wait_until_stopped(run_dir)  # it flushes first: only then remove its files
    print(f"memvid-mcp context, service warm, {args.memories} memories: min "
          f"{min(times):.1f} ms, median {statistics.median(times):.1f} ms, max "
          f"{max(times):.1f} ms (target < {TARGET_MS:.0f} ms); python -c pass: median "
          f"{statistics.median(bare):.1f} ms")


def wait_until_stopped(run_dir: Path, seconds: float = 60) -> None:
    """The service removes its pid file after it flushed and closed every scope."""
    deadline = time.monotonic() + seconds
    while any(run_dir.glob("*/service.pid")) and time.monotonic() < deadline:
        time.sleep(0.05)


if __name__ == "__main__":
    main()
