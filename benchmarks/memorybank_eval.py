"""Dialogue-memory recall on MemoryBank (SiliconFriend, English) with hand-labelled evidence.

Stdlib only. A *turn* is one (query, response) pair of a user's history; its id is
``"{name}/{date}/{index}"`` (``index`` 0-based within that day) and the memory text a product
would store is ``"User: {query}\\nAssistant: {response}"``. The evidence labels live in
``tests/fixtures/memorybank_evidence.jsonl`` (see ``tests/fixtures/README.md``).

Typical use: store every turn of ``load_turns(...)``, ask each labelled question (searching only
that user's turns), collect the ranked turn ids per ``qid`` and pass them to ``hit_at_k`` /
``recall_at_k``. Questions whose evidence list is empty have no answer in the history and are
left out of both scores.

Run ``python benchmarks/memorybank_eval.py [--data DIR] [--fixture FILE]`` for the counts.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(
    os.environ.get("MEMORYBANK_DIR", ROOT.parent / "shared" / "data" / "memorybank_en")
)
DEFAULT_FIXTURE = ROOT / "tests" / "fixtures" / "memorybank_evidence.jsonl"
HISTORY_FILE = "memory_bank_en.json"


def turn_text(query: str, response: str, speaker: str = "User") -> str:
    """The text a memory store keeps for one turn."""
    return f"{speaker}: {query}\nAssistant: {response}"


# first-person words of a probing question, rewritten to name its user ("rewritten" form)
_FIRST_PERSON = (
    (re.compile(r"\b(do|have|am|was) I\b|\bI'(m|ve|d|ll)\b", re.IGNORECASE),
     {"do": "does", "have": "has", "am": "is", "was": "was", "m": "is", "ve": "has",
      "d": "would", "ll": "will"}),
    (re.compile(r"\b(I|me|myself)\b"), None),
    (re.compile(r"\b(my|mine)\b", re.IGNORECASE), "'s"),
)


def ask_as(name: str, question: str, form: str) -> str:
    """A probing question as an agent serving several users asks it: ``"prefix"`` puts the
    user's name in front as a speaker ("Emily: What rock bands do I like?"), ``"rewritten"``
    writes the name in place of the first person ("What rock bands does Emily like?")."""
    if form == "prefix":
        return f"{name}: {question}"
    if form != "rewritten":
        raise ValueError(f"form must be 'prefix' or 'rewritten', not {form!r}")
    (aux, verbs), (pronoun, _), (possessive, suffix) = _FIRST_PERSON
    def swap(m: re.Match[str]) -> str:
        if m.group(1):  # "do I" -> "does Emily"
            return f"{verbs[m.group(1).lower()]} {name}"
        return f"{name} {verbs[m.group(2).lower()]}"  # "I've" -> "Emily has"

    out = aux.sub(swap, question)
    out = pronoun.sub(name, out)
    return possessive.sub(f"{name}{suffix}", out)


def load_turns(
    data_path: str | Path = DEFAULT_DATA, *, named: bool = False
) -> list[dict[str, str]]:
    """Every turn of every user as ``{id, user, date, text}``, in file order.

    ``data_path`` is the ``memorybank_en`` folder or the ``memory_bank_en.json`` file itself.
    The user name is the record's ``name`` field (some top-level keys carry stray spaces).
    ``named``: each turn's text starts with its user's name instead of "User" (a store
    shared by several users, ADR 0035).
    """
    path = Path(data_path)
    if path.is_dir():
        path = path / HISTORY_FILE
    with path.open(encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    turns: list[dict[str, str]] = []
    for record in data.values():
        name = record["name"].strip()
        for date, day in record["history"].items():
            for index, pair in enumerate(day):
                turns.append(
                    {
                        "id": f"{name}/{date}/{index}",
                        "user": name,
                        "date": date,
                        "text": turn_text(pair["query"], pair["response"],
                                          name if named else "User"),
                    }
                )
    return turns


def load_labels(fixture_path: str | Path = DEFAULT_FIXTURE) -> list[dict[str, Any]]:
    """The fixture lines: ``{user, qid, question, evidence, answer[, note]}``."""
    with Path(fixture_path).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def labelled(labels: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The labels that have at least one evidence turn (the scored questions)."""
    return [label for label in labels if label["evidence"]]


def split(labels: Sequence[Mapping[str, Any]], half: str) -> list[Mapping[str, Any]]:
    """The ``"dev"`` half (the 1st, 3rd, 5th... labelled question in fixture order, which
    goes user by user: tune on these) or the ``"held-out"`` half (2nd, 4th...: report only),
    so a gain fitted to the dev questions shows as a gap between the two."""
    if half not in ("dev", "held-out"):
        raise ValueError(f"half must be 'dev' or 'held-out', not {half!r}")
    parity = 0 if half == "dev" else 1
    return [label for i, label in enumerate(labelled(labels)) if i % 2 == parity]


def hit_at_k(
    ranked_ids_per_question: Mapping[str, Sequence[str]],
    labels: Sequence[Mapping[str, Any]],
    k: int,
) -> float:
    """Fraction of labelled questions with at least one evidence id in the top ``k``.

    A question missing from ``ranked_ids_per_question`` counts as an empty ranking.
    """
    scored = labelled(labels)
    if not scored:
        return 0.0
    hits = 0
    for label in scored:
        top = set(ranked_ids_per_question.get(label["qid"], ())[:k])
        hits += bool(top.intersection(label["evidence"]))
    return hits / len(scored)


def recall_at_k(
    ranked_ids_per_question: Mapping[str, Sequence[str]],
    labels: Sequence[Mapping[str, Any]],
    k: int,
) -> float:
    """Mean over labelled questions of the fraction of evidence ids found in the top ``k``."""
    scored = labelled(labels)
    if not scored:
        return 0.0
    total = 0.0
    for label in scored:
        evidence = set(label["evidence"])
        top = set(ranked_ids_per_question.get(label["qid"], ())[:k])
        total += len(evidence & top) / len(evidence)
    return total / len(scored)


def count_table(turns: Sequence[Mapping[str, str]], labels: Sequence[Mapping[str, Any]]) -> str:
    """Per-user counts of turns, questions, labelled / empty questions and evidence ids."""
    users = list(dict.fromkeys(t["user"] for t in turns))
    header = ("user", "turns", "questions", "labelled", "empty", "evidence")
    rows: list[tuple[str, ...]] = []
    totals = [0] * (len(header) - 1)
    for user in users:
        mine = [label for label in labels if label["user"] == user]
        counts = [
            sum(t["user"] == user for t in turns),
            len(mine),
            sum(bool(label["evidence"]) for label in mine),
            sum(not label["evidence"] for label in mine),
            sum(len(label["evidence"]) for label in mine),
        ]
        totals = [a + b for a, b in zip(totals, counts, strict=True)]
        rows.append((user, *map(str, counts)))
    rows.append(("total", *map(str, totals)))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def fmt(row: Sequence[str]) -> str:
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        return "  ".join(cells)

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(header), rule, *map(fmt, rows[:-1]), rule, fmt(rows[-1])])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="memorybank_en folder")
    parser.add_argument("--fixture", type=Path, default=DEFAULT_FIXTURE, help="evidence JSONL")
    args = parser.parse_args(argv)
    turns = load_turns(args.data)
    labels = load_labels(args.fixture)
    print(count_table(turns, labels))
    ids = {t["id"] for t in turns}
    unknown = sorted({e for label in labels for e in label["evidence"]} - ids)
    if unknown:
        print(f"\nevidence ids not in the data: {unknown}")


if __name__ == "__main__":
    main()
