"""Retrieval quality through ``MemoryManager.search`` with the shipped defaults.

Dev sets:
- SciFact (BEIR test split): 5,183 abstracts stored as memories (title + text), 300 claims,
  nDCG@10 and recall@100 from the shared ``ir_eval.py``. ``scifact-two-scopes``: the same
  abstracts alternating between a repository's project scope and the global scope, both
  searched as by default (the two scopes share the fusion depth, ADR 0033).
- MemoryBank (15 users' dialogues, one memory per turn "User: ...\\nAssistant: ...", dated
  as in the data): the labelled questions of ``tests/fixtures/memorybank_evidence.jsonl``,
  hit@5 / hit@10, each user's turns in a store of its own (as the held-out benchmark does)
  and all users in one store; printed for all questions, the dev half (tune on it) and the
  held-out half (report only: a gain fitted to the dev half shows as a gap).

Every figure comes from ``MemoryManager.search(query, mode=...)`` (file backend, default
settings). Corpus vectors come from the on-disk cache of ``corpus.py`` (computed by the same
model, keyed by model and text); query vectors are computed by the product, uncached.

Run: ``HF_HUB_OFFLINE=1 python benchmarks/bench_quality.py
[--sets scifact,scifact-two-scopes,memorybank,memorybank-speakers]
[--provider onnx-int8] [--dump runs.json]``. ``--quick`` runs MemoryBank only (CI-sized).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import corpus
import memorybank_eval
from memvid_mcp.core.config import Settings
from memvid_mcp.manager import MemoryManager
from memvid_mcp.search import lexical

MODES = ("lexical", "semantic", "hybrid")


def ir_eval() -> Any:
    spec = importlib.util.spec_from_file_location("ir_eval", corpus.DATA / "tools" / "ir_eval.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def open_manager(data_dir: Path, args: argparse.Namespace, project: Path | None = None
                 ) -> MemoryManager:
    overrides: dict[str, Any] = {"backend": "file", "embed_model": args.model}
    if args.provider:
        overrides["embed_provider"] = args.provider
    m = MemoryManager.open(data_dir, project=project or data_dir.parent, **overrides)
    cache = corpus.CachedEmbeddings(m.embedder.model_id)
    m.embedder.embed_documents = cache.wrap(m.embedder.embed_documents)  # type: ignore[method-assign]
    return m


def ranked(m: MemoryManager, question: str, mode: str, k: int) -> list[tuple[str, float]]:
    result = m.search(question, k=k, mode=mode)
    if result.mode != mode:
        raise SystemExit(f"asked for {mode}, got {result.mode}: {result.note}")
    return [(h.id, h.score) for h in result.results]


def scifact_set() -> tuple[list[dict[str, Any]], list[dict[str, Any]], Any]:
    """SciFact's abstracts, test claims and relevance labels."""
    data = corpus.DATA / "scifact"
    claims = [json.loads(x) for x in (data / "queries_test.jsonl").read_text("utf-8").split("\n")
              if x.strip()]
    return corpus.scifact_docs(), claims, ir_eval().load_qrels(str(data / "qrels" / "test.tsv"))


def scifact(args: argparse.Namespace, dump: dict[str, Any]) -> list[str]:
    docs, claims, qrels = scifact_set()
    runs: dict[str, dict[str, list[str]]] = {mode: {} for mode in MODES}
    top: dict[str, dict[str, list[str]]] = {mode: {} for mode in MODES}
    raw: dict[str, dict[str, list[tuple[str, float]]]] = {mode: {} for mode in MODES}
    with tempfile.TemporaryDirectory() as tmp, open_manager(Path(tmp) / "data", args) as m:
        started = time.perf_counter()
        stored = m.store_many([{"text": d["text"], "title": d.get("title") or None}
                               for d in docs])
        m.flush()
        took = time.perf_counter() - started
        to_doc = {r.id: d["_id"] for r, d in zip(stored, docs, strict=True)}
        for mode in MODES:
            for q in claims:
                hits = ranked(m, q["text"], mode, 100)
                raw[mode][q["_id"]] = [(to_doc[i], s) for i, s in hits]
                runs[mode][q["_id"]] = [to_doc[i] for i, _ in hits]
                # nDCG@10 from the call an agent makes (k=10)
                top[mode][q["_id"]] = [to_doc[i] for i, _ in ranked(m, q["text"], mode, 10)]
        # Shortcut, labelled: the same vectors searched in float32 with numpy, to measure
        # what int8 storage costs (ADR 0021)
        doc_vecs = corpus.CachedEmbeddings(m.embedder.model_id).lookup(
            [f"{d['title']}\n{d['text']}" if d.get("title") else d["text"] for d in docs])[1]
        assert doc_vecs is not None
        fp32: dict[str, list[str]] = {}
        overlap = []
        for q in claims:
            scores = doc_vecs @ m.embedder.embed_query(q["text"])
            fp32[q["_id"]] = [docs[i]["_id"] for i in np.argsort(-scores)[:100]]
            overlap.append(len(set(fp32[q["_id"]][:10]) & set(runs["semantic"][q["_id"]][:10]))
                           / 10)
    dump["scifact"] = raw
    lines = [f"SciFact test, {len(claims)} claims, {len(docs)} abstracts stored through the "
             f"manager in {took:.0f} s (cached corpus vectors)",
             "| mode | nDCG@10 (k=10 calls) | nDCG@10 (k=100) | recall@100 |", "|---|---|---|---|"]
    for mode in MODES:
        agg, _ = ir_eval().evaluate(qrels, runs[mode], ks=(10, 100))
        agg10, _ = ir_eval().evaluate(qrels, top[mode], ks=(10,))
        lines.append(f"| {mode} | {agg10['ndcg@10']:.4f} | {agg['ndcg@10']:.4f} | "
                     f"{agg['recall@100']:.3f} |")
    agg, _ = ir_eval().evaluate(qrels, fp32, ks=(10, 100))
    lines.append(f"| shortcut: semantic over float32 vectors (numpy, not the product) | | "
                 f"{agg['ndcg@10']:.4f} | {agg['recall@100']:.3f} |")
    lines.append(f"top-10 overlap, product semantic (int8 rows) vs float32: "
                 f"{sum(overlap) / len(overlap):.4f}")
    return lines


def scifact_two_scopes(args: argparse.Namespace, dump: dict[str, Any]) -> list[str]:
    """SciFact with the abstracts alternating between the project and the global scope of a
    git repository, searched as by default (both scopes): what sharing the fusion depth
    between scopes costs (ADR 0033)."""
    docs, claims, qrels = scifact_set()
    runs: dict[str, dict[str, list[str]]] = {mode: {} for mode in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        repo.mkdir()
        subprocess.run(["git", "init", "-q", str(repo)], check=True)
        with open_manager(Path(tmp) / "data", args, project=repo) as m:
            stored = m.store_many([{"text": d["text"], "title": d.get("title") or None,
                                    "scope": "project" if i % 2 else "global"}
                                   for i, d in enumerate(docs)])
            m.flush()
            to_doc = {r.id: d["_id"] for r, d in zip(stored, docs, strict=True)}
            for mode in MODES:
                for q in claims:
                    runs[mode][q["_id"]] = [to_doc[i] for i, _ in ranked(m, q["text"], mode, 10)]
            scopes = m.search_scopes
    dump["scifact-two-scopes"] = runs
    lines = [f"SciFact test, the abstracts split over two scopes {scopes}, both searched",
             "| mode | nDCG@10 (k=10 calls) |", "|---|---|"]
    for mode in MODES:
        agg, _ = ir_eval().evaluate(qrels, runs[mode], ks=(10,))
        lines.append(f"| {mode} | {agg['ndcg@10']:.4f} |")
    return lines


def _memorybank_store(m: MemoryManager, turns: Sequence[dict[str, str]]) -> dict[str, str]:
    ids = {}
    for turn in turns:
        result = m.import_record({"text": turn["text"], "created_at": f"{turn['date']}T12:00:00Z",
                                  "metadata": {"turn": turn["id"]}})
        ids[result.id] = turn["id"]
    m.flush()
    return ids


def memorybank(args: argparse.Namespace, dump: dict[str, Any]) -> list[str]:
    turns = corpus.memorybank_turns()
    labels = memorybank_eval.load_labels()
    users = list(dict.fromkeys(t["user"] for t in turns))
    per_user: dict[str, dict[str, list[str]]] = {mode: {} for mode in MODES}
    together: dict[str, dict[str, list[str]]] = {mode: {} for mode in MODES}
    raw: dict[str, Any] = {"per_user": {m: {} for m in MODES}, "all": {m: {} for m in MODES}}
    with tempfile.TemporaryDirectory() as tmp:
        for n, user in enumerate(users):
            with open_manager(Path(tmp) / f"u{n}" / "data", args) as m:
                ids = _memorybank_store(m, [t for t in turns if t["user"] == user])
                for label in labels:
                    if label["user"] != user:
                        continue
                    for mode in MODES:
                        hits = ranked(m, label["question"], mode, 50)
                        raw["per_user"][mode][label["qid"]] = [(ids[i], s) for i, s in hits]
                        per_user[mode][label["qid"]] = [ids[i] for i, _ in hits]
        with open_manager(Path(tmp) / "all" / "data", args) as m:
            ids = _memorybank_store(m, turns)
            for label in labels:
                for mode in MODES:
                    # all users in one store: the question names its user, as an agent would
                    hits = ranked(m, label["question"], mode, 50)
                    raw["all"][mode][label["qid"]] = [(ids[i], s) for i, s in hits]
                    together[mode][label["qid"]] = [ids[i] for i, _ in hits]
    dump["memorybank"] = raw
    scored = len(memorybank_eval.labelled(labels))
    lines = [f"MemoryBank, {scored} labelled questions, {len(turns)} turns of {len(users)} users",
             "(dev: the 1st, 3rd, 5th... labelled question, tune on these; held-out: the "
             "2nd, 4th..., report only)",
             "| half | mode | per user hit@5 | hit@10 | all users hit@5 | hit@10 |",
             "|---|---|---|---|---|---|"]
    for half in ("all", "dev", "held-out"):
        chosen = labels if half == "all" else memorybank_eval.split(labels, half)
        for mode in MODES:
            cells = [memorybank_eval.hit_at_k(run[mode], chosen, k)
                     for run in (per_user, together) for k in (5, 10)]
            lines.append(f"| {half} ({len(memorybank_eval.labelled(chosen))}) | {mode} | "
                         + " | ".join(f"{c:.3f}" for c in cells) + " |")
    return lines


def memorybank_speakers(args: argparse.Namespace, dump: dict[str, Any]) -> list[str]:
    """All users' turns in one store, each under its user's name, each question asked
    naming its user (see the module docstring)."""
    turns = memorybank_eval.load_turns(corpus.DATA / "memorybank_en", named=True)
    labels = memorybank_eval.load_labels()
    forms = ("prefix", "rewritten")
    runs: dict[str, dict[str, dict[str, list[str]]]] = {
        form: {mode: {} for mode in MODES} for form in forms}
    with tempfile.TemporaryDirectory() as tmp, open_manager(Path(tmp) / "data", args) as m:
        ids = _memorybank_store(m, turns)
        for form in forms:
            for label in labels:
                question = memorybank_eval.ask_as(label["user"], label["question"], form)
                for mode in MODES:
                    hits = ranked(m, question, mode, 10)
                    runs[form][mode][label["qid"]] = [ids[i] for i, _ in hits]
    dump["memorybank-speakers"] = runs
    scored = len(memorybank_eval.labelled(labels))
    lines = [f"MemoryBank with speakers: {len(turns)} turns stored as '{{name}}: ...', all "
             f"users in one store, {scored} labelled questions asked naming their user",
             "| half | mode | prefix hit@5 | hit@10 | rewritten hit@5 | hit@10 |",
             "|---|---|---|---|---|---|"]
    for half in ("all", "dev", "held-out"):
        chosen = labels if half == "all" else memorybank_eval.split(labels, half)
        for mode in MODES:
            cells = [memorybank_eval.hit_at_k(runs[form][mode], chosen, k)
                     for form in forms for k in (5, 10)]
            lines.append(f"| {half} ({len(memorybank_eval.labelled(chosen))}) | {mode} | "
                         + " | ".join(f"{c:.3f}" for c in cells) + " |")
    return lines


SETS = {"scifact": scifact, "scifact-two-scopes": scifact_two_scopes, "memorybank": memorybank,
        "memorybank-speakers": memorybank_speakers}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--quick", action="store_true", help="MemoryBank only")
    parser.add_argument("--speaker-boost", type=float, default=None,
                        help="experiment: override lexical.SPEAKER_BOOST (ADR 0035)")
    parser.add_argument("--model", default=None, help="model (default: the bundled MiniLM)")
    parser.add_argument("--provider", default=None, help="embedding provider (default: shipped)")
    parser.add_argument("--dump", type=Path, default=None, help="write every ranking here")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args.model = args.model or corpus.default_model()
    if args.speaker_boost is not None:
        lexical.SPEAKER_BOOST = args.speaker_boost
    sets = ["memorybank"] if args.quick else args.sets.split(",")
    provider = args.provider or Settings().embed_provider
    print(f"provider {provider}, speaker boost {lexical.SPEAKER_BOOST}, "
          f"load {os.getloadavg()[0]:.2f}", flush=True)
    dump: dict[str, Any] = {}
    for name in sets:
        runner = SETS.get(name)
        if runner is None:
            raise SystemExit(f"--sets: unknown set {name!r} ({', '.join(SETS)})")
        lines = runner(args, dump)
        print("\n".join(lines), flush=True)
    if args.dump:
        args.dump.write_text(json.dumps(dump), encoding="utf-8")


if __name__ == "__main__":
    main()
