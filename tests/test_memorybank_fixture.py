"""The hand-labelled MemoryBank evidence fixture is well formed and matches the data.

The data checks need ``<repo>/../shared/data/memorybank_en`` (or ``$MEMORYBANK_DIR``) and skip
without it; the fixture-shape and metric checks always run.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import memorybank_eval as mbe  # noqa: E402

FIXTURE = ROOT / "tests" / "fixtures" / "memorybank_evidence.jsonl"
DATA = Path(
    os.environ.get(
        "MEMORYBANK_DIR", Path(__file__).resolve().parents[2] / "shared" / "data" / "memorybank_en"
    )
)
needs_data = pytest.mark.skipif(
    not (DATA / "memory_bank_en.json").is_file(),
    reason=f"MemoryBank data not found at {DATA} (set MEMORYBANK_DIR to its folder)",
)


def test_fixture_shape() -> None:
    labels = mbe.load_labels(FIXTURE)
    assert len(labels) == 100
    qids = [label["qid"] for label in labels]
    assert len(set(qids)) == len(qids)
    for label in labels:
        assert re.fullmatch(re.escape(label["user"]) + r"-\d+", label["qid"])
        assert label["question"]
        assert len(set(label["evidence"])) == len(label["evidence"])
        if label["evidence"]:
            assert label["answer"]
        else:
            assert label.get("note"), f"{label['qid']}: empty evidence needs a note"
    assert len(mbe.labelled(labels)) >= 90


@needs_data
def test_evidence_ids_exist() -> None:
    turns = mbe.load_turns(DATA)
    ids = {turn["id"] for turn in turns}
    assert len(ids) == len(turns) == 566
    missing = [
        (label["qid"], e)
        for label in mbe.load_labels(FIXTURE)
        for e in label["evidence"]
        if e not in ids
    ]
    assert not missing
    for label in mbe.load_labels(FIXTURE):
        assert all(e.startswith(label["user"] + "/") for e in label["evidence"])


@needs_data
def test_questions_match_probing_file() -> None:
    expected: dict[str, str] = {}
    with (DATA / "probing_questions_en.jsonl").open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                for name, questions in json.loads(line).items():
                    for i, question in enumerate(questions):
                        expected[f"{name}-{i}"] = question
    assert {label["qid"]: label["question"] for label in mbe.load_labels(FIXTURE)} == expected


def test_metrics_perfect_and_empty() -> None:
    labels = mbe.load_labels(FIXTURE)
    perfect = {label["qid"]: list(label["evidence"]) for label in labels}
    k = max(len(label["evidence"]) for label in labels)
    assert mbe.hit_at_k(perfect, labels, 1) == 1.0
    assert mbe.recall_at_k(perfect, labels, k) == 1.0
    assert mbe.hit_at_k({}, labels, 10) == 0.0
    assert mbe.recall_at_k({}, labels, 10) == 0.0
    empty = {label["qid"]: [] for label in labels}
    assert mbe.hit_at_k(empty, labels, 10) == 0.0


def test_metrics_partial() -> None:
    labels = [
        {"qid": "a-0", "user": "a", "evidence": ["a/d/0", "a/d/1"]},
        {"qid": "a-1", "user": "a", "evidence": ["a/d/2"]},
        {"qid": "a-2", "user": "a", "evidence": []},  # unanswerable: not scored
    ]
    ranked = {"a-0": ["a/d/5", "a/d/1", "a/d/0"], "a-1": ["a/d/3"], "a-2": ["a/d/0"]}
    assert mbe.hit_at_k(ranked, labels, 1) == 0.0
    assert mbe.hit_at_k(ranked, labels, 2) == 0.5
    assert mbe.recall_at_k(ranked, labels, 2) == 0.25
    assert mbe.recall_at_k(ranked, labels, 3) == 0.5


def test_split_halves_are_disjoint_and_cover_the_labelled_questions() -> None:
    labels = mbe.load_labels(mbe.DEFAULT_FIXTURE)
    dev = [label["qid"] for label in mbe.split(labels, "dev")]
    held = [label["qid"] for label in mbe.split(labels, "held-out")]
    assert not set(dev) & set(held)
    assert sorted(dev + held) == sorted(label["qid"] for label in mbe.labelled(labels))
    assert abs(len(dev) - len(held)) <= 1
    with pytest.raises(ValueError):
        mbe.split(labels, "test")


@needs_data
def test_named_turns_carry_their_users_name_as_speaker() -> None:
    """The memorybank-speakers set (ADR 0035): same ids and responses, the user's real name
    in place of "User"."""
    plain = mbe.load_turns(DATA)
    named = mbe.load_turns(DATA, named=True)
    assert [t["id"] for t in named] == [t["id"] for t in plain]
    for p, n in zip(plain, named, strict=True):
        assert n["text"] == f"{n['user']}:" + p["text"].removeprefix("User:")


def test_questions_asked_naming_their_user() -> None:
    assert mbe.ask_as("Emily", "What rock bands do I like?", "prefix") == (
        "Emily: What rock bands do I like?")
    assert mbe.ask_as("John Zhang", "What rock bands do I like?", "rewritten") == (
        "What rock bands does John Zhang like?")
    assert mbe.ask_as("Emily", "I've told you my plans, did you note them for me?",
                      "rewritten") == (
        "Emily has told you Emily's plans, did you note them for Emily?")
    with pytest.raises(ValueError):
        mbe.ask_as("Emily", "hi", "suffix")
