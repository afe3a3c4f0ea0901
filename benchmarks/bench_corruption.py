"""Random corruption sweep: flip or cut random bytes of every durable file kind, count detection.

For each file kind, ``--per-kind`` times per fault: copy a prepared store, flip one random byte
(or truncate at a random offset) of a random file of that kind, reopen and classify:

- ``refused``: the open fails with a CorruptionError naming the file (the snapshot);
- ``detected``: ``verify`` names the file;
- ``harmless``: not reported, and every memory is still served with its exact text (e.g. a
  byte of MP4 container padding, an unused header flag);
- ``silent``: not reported but a memory is lost or served with different text: must be 0.

Detected cases then run ``repair``: ``repaired`` counts those after which ``verify`` is clean
(the rest are reported honestly by ``verify``). The WAL is damaged in a crash image (a copy
taken while the writer was open) so it still holds records.

Run: ``python benchmarks/bench_corruption.py [--per-kind 10] [--seed 1]``.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

from memvid_mcp.core.errors import CorruptionError, MemvidError
from memvid_mcp.manager import MemoryManager

KINDS: dict[str, tuple[str, str]] = {  # kind -> (template, glob under the scope directory)
    "WAL (.log)": ("crash", "wal/*.log"),
    "snapshot": ("file", "meta/snapshot.jsonl.zst"),
    "body (.mvb)": ("file", "bodies/*/*.mvb"),
    "lexical meta": ("file", "meta/lexical/memvid_lexical.json"),
    "lexical segments (tantivy)": ("file", "meta/lexical/*.*[!k]"),
    "vectors.json": ("file", "meta/vectors/vectors.json"),
    "vectors.q8": ("file", "meta/vectors/vectors.q8"),
    "vectors.log": ("file", "meta/vectors/vectors.log"),
    "manifest.mvm": ("video", "manifest.mvm"),
    ".mvi": ("video", "segments/*.mvi"),
    "segment .mp4": ("video", "segments/*.mp4"),
}


def build(root: Path, backend: str, crash: bool) -> tuple[Path, dict[str, str]]:
    data = root / "data"
    rng = random.Random(7)
    m = MemoryManager.open(data, backend=backend, project=root, embeddings=False,
                           checkpoint_wal_bytes=1 << 30)
    texts = {}
    for i in range(12):
        words = " ".join(rng.choice(["alpha", "beta", "gamma", "delta", "Δx", "{k: 1}"]) +
                         str(rng.randrange(1000)) for _ in range(rng.randrange(5, 400)))
        text = f"memory {i} uniq{i}x: {words}"
        texts[m.store(text, tags=[f"t{i}"]).id] = text
    m.flush()
    scope = m._scope("global")
    bodies = sorted(scope._by_body)
    scope.add_vectors(bodies, np.random.default_rng(0).random((len(bodies), 384),
                                                                dtype=np.float32))
    scope.commit_indexes(force=True)
    if crash:
        image = root / "image"
        shutil.copytree(data, image, ignore=shutil.ignore_patterns("LOCK"))
        m.close()
        shutil.rmtree(data)
        image.rename(data)
    else:
        m.close()
    return data, texts


def classify(data: Path, project: Path, backend: str, target: Path, texts: dict[str, str],
             counts: Counter[str]) -> str:
    opener: Callable[[], MemoryManager] = lambda: MemoryManager.open(  # noqa: E731
        data, backend=backend, project=project, embeddings=False)
    try:
        with opener() as m:
            problems = m.verify()
            named = any(p.path == str(target) or str(target).startswith(p.path + "/")
                        or p.path.startswith(str(target.parent)) for p in problems)
            wrong = lost = misses = 0
            for n, (memory_id, text) in enumerate(texts.items()):
                try:
                    got = m.get(memory_id).memories
                except MemvidError:
                    got = ()
                if not got:
                    lost += 1
                elif got[0].text != text:
                    wrong += 1
                try:
                    hits = m.search(f"uniq{n}x", mode="lexical").results
                except MemvidError:
                    hits = ()
                if got and [h.id for h in hits][:1] != [memory_id]:
                    misses += 1
            counts["unreadable"] += lost
            if not named:
                if misses and not problems:
                    counts["search_wrong"] += 1
                if wrong or lost:
                    return "detected" if problems else "silent"
                return "harmless"
            m.repair()
            return "repaired" if not m.verify() else "detected"
    except CorruptionError as exc:
        if exc.path == str(target):
            return "refused"
        raise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-kind", type=int, default=10, help="injections per kind+fault")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-seconds", type=float, default=1200.0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    deadline = time.monotonic() + args.max_seconds
    root = Path(tempfile.mkdtemp(prefix="memvid-corrupt-"))
    rows: dict[str, Counter[str]] = {}
    try:
        templates = {}
        for name, backend, crash in (("file", "file", False), ("crash", "file", True),
                                     ("video", "video", False)):
            (root / name).mkdir()
            templates[name] = (backend, *build(root / name, backend, crash), root / name)
        for kind, (template, pattern) in KINDS.items():
            backend, data, texts, project = templates[template]
            counts = rows[kind] = Counter()
            for fault in ("flip", "truncate"):
                for _ in range(args.per_kind):
                    if time.monotonic() > deadline:
                        break
                    work = root / "work"
                    shutil.rmtree(work, ignore_errors=True)
                    shutil.copytree(data, work)
                    meta_ok = kind == "lexical meta"
                    files = sorted(p for p in (work / "global").glob(pattern)
                                   if p.is_file() and p.stat().st_size > 0
                                   and (meta_ok or p.name != "memvid_lexical.json"))
                    target = rng.choice(files)
                    raw = bytearray(target.read_bytes())
                    at = rng.randrange(len(raw))
                    if fault == "flip":
                        raw[at] ^= rng.randrange(1, 256)
                        target.write_bytes(bytes(raw))
                    else:
                        target.write_bytes(bytes(raw[:at]))
                    counts["injected"] += 1
                    outcome = classify(work, project, backend, target, texts, counts)
                    counts[outcome] += 1
                    if outcome in ("refused", "detected", "repaired"):
                        counts["found"] += 1
            print(f"\r{kind}: {dict(counts)}", file=sys.stderr)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    cols = ["file kind", "injected", "detected", "refused to open", "repair -> clean",
            "harmless, unreported", "silent loss/change", "search wrong, unreported",
            "memories unreadable"]
    print(f"bench_corruption: seed {args.seed}, {args.per_kind} flips + {args.per_kind} "
          "truncations per kind")
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    total: Counter[str] = Counter()
    for kind, c in rows.items():
        total.update(c)
        print(f"| {kind} | {c['injected']} | {c['found']} | {c['refused']} | {c['repaired']} | "
              f"{c['harmless']} | {c['silent']} | {c['search_wrong']} | {c['unreadable']} |")
    print(f"| all | {total['injected']} | {total['found']} | {total['refused']} | "
          f"{total['repaired']} | {total['harmless']} | {total['silent']} | "
          f"{total['search_wrong']} | {total['unreadable']} |")
    sys.exit(1 if total["silent"] else 0)


if __name__ == "__main__":
    main()
