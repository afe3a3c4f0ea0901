"""Markdown import throughput through the real CLI, and that re-importing adds nothing
(issue 13: "10,000 markdown notes in under 2 minutes with embeddings off, re-import adds 0").

    python benchmarks/bench_import.py [--notes 10000] [--backend file|video]

Notes are generated: front matter with tags on most, one to four headed sections, and every
twentieth note long enough (~5 KB) to be cut into several chunks. The command is the one a
person runs, ``memvid-mcp import --from markdown VAULT``, in a fresh data directory with
``MEMVID_EMBEDDINGS=0`` and a run directory of its own (no service), timed from start to exit.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = (
    "deploy", "rollback", "cache", "index", "shard", "replica", "latency", "budget",
    "incident", "review", "owner", "schema", "migration", "backup", "restore", "token",
    "quota", "alert", "runbook", "canary", "feature", "flag", "queue", "worker", "retry",
    "timeout", "lease", "quorum", "snapshot", "compaction", "vector", "lexical",
)


def _sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def make_vault(root: Path, notes: int, seed: int = 13) -> Path:
    """``notes`` Markdown files under ``root`` (in 100 folders), deterministic for a seed."""
    rng = random.Random(seed)
    for i in range(notes):
        folder = root / f"area-{i % 100:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        parts = []
        if i % 4:
            tags = ", ".join(rng.sample(WORDS, 2))
            parts.append(f"---\ntags: [{tags}]\nid: {i}\n---")
        parts.append(f"# Note {i}")
        sections = 12 if i % 20 == 0 else rng.randint(1, 4)
        for s in range(sections):
            paragraph = " ".join(_sentence(rng, rng.randint(8, 16)) for _ in range(4))
            parts.append(f"## Section {s}\n\n{paragraph} (note {i}, part {s})")
        (folder / f"note-{i:05d}.md").write_text("\n\n".join(parts) + "\n", encoding="utf-8")
    return root


def run_import(data_dir: Path, vault: Path, run_dir: Path, backend: str) -> tuple[dict, float]:
    env = {**os.environ, "MEMVID_EMBEDDINGS": "0", "MEMVID_RUN_DIR": str(run_dir)}
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "memvid_mcp", "--data-dir", str(data_dir), "--backend", backend,
         "--json", "import", "--from", "markdown", str(vault)],
        env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"import failed ({proc.returncode}): {proc.stderr.strip()}")
    return json.loads(proc.stdout), elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--notes", type=int, default=10_000)
    parser.add_argument("--backend", choices=["file", "video"], default="file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        base = Path(tmp)
        (base / "data").mkdir()
        (base / "run").mkdir()
        vault = make_vault(base / "vault", args.notes)
        first, first_s = run_import(base / "data", vault, base / "run", args.backend)
        again, again_s = run_import(base / "data", vault, base / "run", args.backend)
    print(f"notes: {args.notes}  backend: {args.backend}  embeddings: off")
    print(f"first import:  {first['items']} chunks, {first['imported']} imported, "
          f"{first['deduplicated']} duplicates in {first_s:.1f} s "
          f"({args.notes / first_s:.0f} notes/s)")
    print(f"second import: {again['imported']} imported, {again['deduplicated']} duplicates "
          f"in {again_s:.1f} s")
    print(f"under 2 minutes: {'yes' if first_s < 120 else 'NO'}; "
          f"re-import adds 0: {'yes' if again['imported'] == 0 else 'NO'}")


if __name__ == "__main__":
    main()
