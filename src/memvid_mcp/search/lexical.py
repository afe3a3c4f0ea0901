"""BM25 keyword search on tantivy, with read-your-writes before the commit.

Why tantivy: 0.12 ms p50 at 100k documents where rank-bm25 needs 100+ ms (ADR 0005). Its
commits cost 40-120 ms whatever the batch size, so writes are group-committed and the
uncommitted tail is covered here: upserted documents since the last commit are scored in
Python with the same BM25 formula and the index's statistics, and committed hits whose id was
replaced or deleted since are dropped. Queries never reach tantivy's query parser: they are
analysed with the index's own English-stemming analyser and turned into an OR of term
queries, so no input can raise a parse error.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import tantivy

from ..core.errors import CorruptionError, ReadOnlyError, StorageError, ValidationError
from .filters import SearchFilters, as_utc, norm_tag
from .speakers import speakers
from .stopwords import STOP_WORDS

log = logging.getLogger(__name__)

# 3: a memory's tags are indexed as words with its title and text (issue 12); 4: speaker-like
# prefixes' names are weighted (ADR 0035); an index of an older version is rebuilt on open
SCHEMA_VERSION = 4
# The names of a memory's speaker-like prefixes ("Alice: ...", speakers.py) are indexed in a
# field of their own too, whose BM25 score counts this many times (ADR 0035: on the
# memorybank-speakers dev half, 2.0 beat 1.0, 0.5, 0.3 and repeating the names in the body;
# at 3.0 lexical alone beats hybrid there)
SPEAKER_BOOST = 2.0
META_FILE = "memvid_lexical.json"
K1, B = 1.2, 0.75  # tantivy's fixed BM25 parameters
# Title and text are indexed as one field: on SciFact that scores nDCG@10 0.687 against
# 0.666 for two fields (BM25 normalises each field's length separately). ``speaker`` holds
# only the speaker names (they stay in ``body`` with the text).
_TEXT_FIELDS = ("body", "speaker")
_WRITER_HEAP = 50_000_000
COMMIT_INTERVAL = 0.5  # seconds; maybe_commit's group-commit window
# A filtered search for up to UNFILTERED_MAX_K hits first looks at UNFILTERED_FACTOR times k
# unfiltered hits (see ``search``); with 2 of 8 tags (44% of memories pass) k of them pass
# almost always. At 50k documents: k=27 0.27 / 0.52 ms p50 / p95 against 0.54 / 8.9 for the
# filtered query; k=60 about even; k=132 (a hybrid search's list) 0.96 against 0.71 p50.
UNFILTERED_FACTOR = 4
UNFILTERED_MAX_K = 64


@dataclass(frozen=True, slots=True)
class LexicalDoc:
    """What the lexical index knows about one memory."""

    id: str
    text: str
    title: str | None
    tags: tuple[str, ...]
    kind: str
    created_at: datetime
    pinned: bool


@dataclass(slots=True)
class _Pending:
    """An upserted document not yet visible to tantivy's searcher: term counts per field."""

    doc: LexicalDoc
    terms: dict[str, Counter[str]]
    lengths: dict[str, int]


def _analyzer(stop_words: bool = False) -> tantivy.TextAnalyzer:
    # Same pipeline as tantivy's built-in "en_stem", which indexes the text fields; queries
    # also drop function words before stemming (stopwords.py).
    builder = (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
        .filter(tantivy.Filter.remove_long(40))
        .filter(tantivy.Filter.lowercase())
    )
    if stop_words:
        builder = builder.filter(tantivy.Filter.custom_stopword(sorted(STOP_WORDS)))
    return builder.filter(tantivy.Filter.stemmer("english")).build()


def _schema() -> tantivy.Schema:
    sb = tantivy.SchemaBuilder()
    sb.add_text_field("id", stored=True, tokenizer_name="raw", index_option="basic")
    for name in _TEXT_FIELDS:
        sb.add_text_field(name, tokenizer_name="en_stem", index_option="freq")
        sb.add_unsigned_field(f"len_{name}", fast=True)
    sb.add_text_field("tags", tokenizer_name="raw", index_option="basic")
    sb.add_text_field("kind", tokenizer_name="raw", index_option="basic")
    sb.add_integer_field("created", indexed=True, fast=True)
    sb.add_boolean_field("pinned", indexed=True)
    return sb.build()


def _index_failure(exc: BaseException) -> bool:
    """Whether tantivy failed on damaged index files: an error, or a Rust panic surfacing as
    ``pyo3_runtime.PanicException`` (a BaseException), never an interrupt or exit."""
    return (
        isinstance(exc, OSError | ValueError | KeyError | TypeError | RuntimeError | IndexError)
        or type(exc).__name__ == "PanicException"
    )


def indexed_text(doc: LexicalDoc) -> str:
    """What the ``body`` field analyses for a memory: its tags, title and text. Tags are
    words an agent chose to describe the memory, so a keyword search finds a memory by its
    tag even when the text never says it (schema 3)."""
    head = [" ".join(doc.tags)] if doc.tags else []
    if doc.title:
        head.append(doc.title)
    return "\n".join([*head, doc.text])


def speaker_text(doc: LexicalDoc) -> str:
    """What the ``speaker`` field analyses: the names of the text's speaker-like prefixes
    ("Alice: ..."), so that a query naming a speaker favours what that speaker said over
    memories merely mentioning them. A speaker on every memory ("User:", "Assistant:") has
    an idf near zero there and changes nothing (schema 4, ADR 0035)."""
    return "\n".join(speakers(doc.text))


def _micros(dt: datetime) -> int:
    utc = as_utc(dt)
    return int(utc.timestamp()) * 1_000_000 + utc.microsecond


def _idf(n_docs: int, doc_freq: int) -> float:
    return math.log(1.0 + (n_docs - doc_freq + 0.5) / (doc_freq + 0.5))


class LexicalIndex:
    """A tantivy index of memories. One writer thread, any number of searcher threads.

    ``path=None`` keeps everything in memory (tests). Opening a damaged or foreign index
    raises ``CorruptionError``: the caller deletes the directory and rebuilds from its own
    records, replaying everything after ``committed_seq``.
    """

    def __init__(self, path: Path | None, *, read_only: bool = False) -> None:
        self._path = Path(path) if path is not None else None
        self._read_only = read_only
        self._analyzer = _analyzer()
        self._query_analyzer = _analyzer(stop_words=True)
        self._write_lock = threading.RLock()  # upsert/delete/commit/clear
        self._state_lock = threading.Lock()  # searcher, pending, shadow (held briefly)
        self._committed_seq = -1
        self._index = self._open_index()
        self._schema = self._index.schema
        self._writer: Any = None if read_only else self._index.writer(_WRITER_HEAP, 1)
        if self._writer is not None:
            try:  # a writer killed mid-commit leaves files the next commit would collide with
                self._writer.garbage_collect_files()
            except BaseException as exc:
                if not _index_failure(exc):
                    raise
                log.warning("%s: lexical garbage collection failed: %s", self._path, exc)
        self._searcher = self._index.searcher()
        self._avg_len = self._field_averages(self._searcher)
        self._pending: dict[str, _Pending] = {}
        self._tail_terms: dict[str, set[str]] = {}  # term -> pending ids holding it
        self._tail_len = dict.fromkeys(_TEXT_FIELDS, 0)  # summed field lengths of the tail
        self._shadow: set[str] = set()  # ids whose committed version must not be returned
        self._len_delta = 0
        self._dirty = False
        self._last_commit = time.monotonic()
        self._closed = False

    # ------------------------------------------------------------------ opening

    def _open_index(self) -> tantivy.Index:
        if self._path is None:
            return tantivy.Index(_schema())
        meta_path = self._path / META_FILE
        try:
            exists = self._path.is_dir() and tantivy.Index.exists(str(self._path))
        except (OSError, ValueError) as exc:
            raise CorruptionError(str(self._path), f"cannot read lexical index: {exc}") from exc
        if exists and not self._read_only and self._outdated(meta_path):
            # derived data: an index of an older schema is dropped and rebuilt by the
            # caller from its records (committed_seq -1), not quarantined as damaged
            log.info("%s: lexical index of an older schema; rebuilding it", self._path)
            try:
                shutil.rmtree(self._path)
            except OSError as exc:
                raise StorageError(f"{self._path}: cannot remove old lexical index: {exc}") from exc
            exists = False
        if not exists:
            if self._read_only:
                return tantivy.Index(_schema())
            try:
                self._path.mkdir(parents=True, exist_ok=True)
                self._write_meta(-1)
                return tantivy.Index(_schema(), path=str(self._path), reuse=False)
            except (OSError, ValueError) as exc:
                raise StorageError(f"{self._path}: cannot create lexical index: {exc}") from exc
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            if meta.get("schema_version") != SCHEMA_VERSION:
                raise ValueError(f"schema version {meta.get('schema_version')!r}")
            self._committed_seq = int(meta["committed_seq"])
            if not tantivy.Index.is_compatible(str(self._path)):
                raise ValueError("index format of another tantivy version")
            index = tantivy.Index.open(str(self._path))
            self._check_schema(index)
        except CorruptionError:
            raise
        except BaseException as exc:  # tantivy panics (BaseException) on some damaged files
            if not _index_failure(exc):
                raise
            raise CorruptionError(str(self._path), f"lexical index unusable: {exc}") from exc
        return index

    @staticmethod
    def _outdated(meta_path: Path) -> bool:
        """Whether the sidecar names an older schema version (a newer or unreadable one is
        left to the checks that raise ``CorruptionError``)."""
        try:
            version = json.loads(meta_path.read_text(encoding="utf-8")).get("schema_version")
        except (OSError, ValueError, AttributeError):
            return False
        return isinstance(version, int) and not isinstance(version, bool) and (
            1 <= version < SCHEMA_VERSION)

    @staticmethod
    def _check_schema(index: tantivy.Index) -> None:
        """A query on every field raises if the stored schema is not ours."""
        schema = index.schema
        searcher = index.searcher()
        for field in ("id", *_TEXT_FIELDS, "tags", "kind"):
            searcher.search(tantivy.Query.term_query(schema, field, "x"), 1)
        searcher.search(tantivy.Query.term_query(schema, "pinned", True), 1)
        searcher.search(
            tantivy.Query.range_query(schema, "created", tantivy.FieldType.Integer, 0, 1), 1
        )
        for name in _TEXT_FIELDS:
            searcher.search(
                tantivy.Query.range_query(schema, f"len_{name}", tantivy.FieldType.Unsigned, 0, 1),
                1,
            )

    def _write_meta(self, seq: int) -> None:
        if self._path is None:
            return
        meta = {"schema_version": SCHEMA_VERSION, "committed_seq": seq}
        tmp = self._path / (META_FILE + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(meta, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._path / META_FILE)

    def _field_averages(self, searcher: tantivy.Searcher) -> dict[str, float]:
        """Average analysed length of each text field, as BM25 needs for the tail."""
        n = searcher.num_docs
        if n == 0:
            return dict.fromkeys(_TEXT_FIELDS, 0.0)
        aggs = {f"s_{f}": {"sum": {"field": f"len_{f}"}} for f in _TEXT_FIELDS}
        try:
            result = searcher.aggregate(tantivy.Query.all_query(), aggs)
            return {f: float(result[f"s_{f}"]["value"] or 0.0) / n for f in _TEXT_FIELDS}
        except (ValueError, KeyError, TypeError):  # pragma: no cover - defensive
            return dict.fromkeys(_TEXT_FIELDS, 0.0)

    # ------------------------------------------------------------------ writing

    def _tokens(self, text: str) -> list[str]:
        return list(self._analyzer.analyze(text)) if text else []

    def _check_writable(self) -> None:
        if self._closed:
            raise StorageError("lexical index is closed")
        if self._writer is None:
            raise ReadOnlyError("lexical index opened read-only")

    def _committed_has(self, doc_id: str) -> bool:
        if self._searcher.num_docs == 0:  # fresh, or a rebuild before its first commit
            return False
        hits = self._searcher.search(tantivy.Query.term_query(self._schema, "id", doc_id), 1)
        return bool(hits.hits)

    def _lookup(self, doc_id: str) -> tuple[bool, bool]:
        """(exists now, in the committed snapshot). Only committed ids need shadowing, so
        brand-new documents do not make searches over-fetch."""
        shadowed = doc_id in self._shadow
        committed = shadowed or self._committed_has(doc_id)
        return doc_id in self._pending or (committed and not shadowed), committed

    def upsert(self, docs: Sequence[LexicalDoc]) -> None:
        """Add or replace documents by id; searchable immediately, durable at ``commit``."""
        with self._write_lock:
            self._check_writable()
            for doc in docs:
                if not doc.id:
                    raise ValidationError("id", "must not be empty")
                texts = {"body": indexed_text(doc), "speaker": speaker_text(doc)}
                terms = {f: Counter(self._tokens(texts[f])) for f in _TEXT_FIELDS}
                lengths = {f: sum(c.values()) for f, c in terms.items()}
                tdoc = tantivy.Document()
                tdoc.add_text("id", doc.id)
                for name in _TEXT_FIELDS:
                    if texts[name]:
                        tdoc.add_text(name, texts[name])
                for name in _TEXT_FIELDS:
                    tdoc.add_unsigned(f"len_{name}", lengths[name])
                for tag in dict.fromkeys(norm_tag(t) for t in doc.tags):
                    tdoc.add_text("tags", tag)
                tdoc.add_text("kind", doc.kind)
                tdoc.add_integer("created", _micros(doc.created_at))
                tdoc.add_boolean("pinned", bool(doc.pinned))
                existed, committed = self._lookup(doc.id)
                self._writer.delete_documents_by_term("id", doc.id)
                self._writer.add_document(tdoc)
                with self._state_lock:
                    self._drop_pending(doc.id)
                    self._pending[doc.id] = _Pending(doc, terms, lengths)
                    for field in _TEXT_FIELDS:
                        self._tail_len[field] += lengths[field]
                        for term in terms[field]:
                            self._tail_terms.setdefault(term, set()).add(doc.id)
                    if committed:
                        self._shadow.add(doc.id)
                    self._len_delta += 0 if existed else 1
                self._dirty = True

    def _drop_pending(self, doc_id: str) -> None:
        """Forget an uncommitted version (state lock held)."""
        old = self._pending.pop(doc_id, None)
        if old is None:
            return
        for field in _TEXT_FIELDS:
            self._tail_len[field] -= old.lengths[field]
            for term in old.terms[field]:
                holders = self._tail_terms.get(term)
                if holders is not None:
                    holders.discard(doc_id)
                    if not holders:
                        del self._tail_terms[term]

    def delete(self, ids: Iterable[str]) -> None:
        """Remove documents by id (unknown ids are ignored)."""
        with self._write_lock:
            self._check_writable()
            for doc_id in ids:
                existed, committed = self._lookup(doc_id)
                self._writer.delete_documents_by_term("id", doc_id)
                with self._state_lock:
                    self._drop_pending(doc_id)
                    if committed:
                        self._shadow.add(doc_id)
                    self._len_delta -= 1 if existed else 0
                self._dirty = True

    def clear(self) -> None:
        """Drop every document and commit at once; ``committed_seq`` goes back to -1."""
        with self._write_lock:
            self._check_writable()
            self._writer.delete_all_documents()
            self._dirty = True
            self._commit(-1)

    # ------------------------------------------------------------------ commits

    @property
    def committed_seq(self) -> int:
        """The manager's WAL sequence number recorded by the last commit (-1: fresh)."""
        return self._committed_seq

    @property
    def dirty(self) -> bool:
        return self._dirty

    def commit(self, seq: int) -> None:
        """Make every change durable and record ``seq`` with it (40-120 ms when dirty)."""
        with self._write_lock:
            self._check_writable()
            self._commit(seq)

    def maybe_commit(self, seq: int, interval: float = COMMIT_INTERVAL) -> bool:
        """Group commit: commit only when dirty and the last commit is ``interval`` s old."""
        with self._write_lock:
            if not self._dirty or time.monotonic() - self._last_commit < interval:
                return False
            self._check_writable()
            self._commit(seq)
            return True

    def _commit(self, seq: int) -> None:
        searcher = self._searcher
        avg_len = self._avg_len
        if self._dirty:
            try:
                self._writer.commit()
            except (OSError, ValueError, RuntimeError) as exc:
                raise StorageError(f"{self._path}: lexical commit failed: {exc}") from exc
            self._index.reload()
            searcher = self._index.searcher()
            avg_len = self._field_averages(searcher)
        # The sidecar is written after tantivy's commit: a crash in between leaves an older
        # seq, and replaying the WAL from there is idempotent (upserts replace).
        self._write_meta(seq)
        with self._state_lock:
            self._searcher = searcher
            self._avg_len = avg_len
            self._pending.clear()
            self._tail_terms.clear()
            self._tail_len = dict.fromkeys(_TEXT_FIELDS, 0)
            self._shadow.clear()
            self._len_delta = 0
            self._committed_seq = seq
        self._dirty = False
        self._last_commit = time.monotonic()

    # ------------------------------------------------------------------ reading

    def __len__(self) -> int:
        with self._state_lock:
            return int(self._searcher.num_docs) + self._len_delta

    def analyze(self, text: str) -> list[str]:
        """The distinct index terms of ``text``, in order."""
        return list(dict.fromkeys(self._tokens(text)))

    def query_terms(self, query: str) -> list[str]:
        """What a query searches for: its distinct terms without function words ("when do
        we deploy?" -> ["deploy"]), or all of them when nothing else is left ("to be or
        not to be")."""
        terms = list(dict.fromkeys(self._query_analyzer.analyze(query))) if query else []
        return terms or self.analyze(query)

    def search(
        self,
        query: str,
        k: int,
        filters: SearchFilters | None = None,
        *,
        allowed: Callable[[str], bool] | None = None,
    ) -> list[tuple[str, float]]:
        """Up to ``k`` ``(id, bm25)`` pairs, best first, OR semantics, filters before the cut.

        Sees every upsert and delete made so far, committed or not. ``allowed``, when given
        with ``filters``, must say for an id whether that memory passes them (the caller's
        own records): for up to ``UNFILTERED_MAX_K`` hits the committed index is then searched
        without the filter first, where tantivy can skip whole blocks of postings (block-max
        WAND: 2x faster at 50k, without the filtered query's 9 ms tail), and the filtered
        query runs only when too few of those hits pass.
        """
        if k <= 0:
            return []
        terms = self.query_terms(query)
        if not terms:
            return []
        if filters is not None and filters.empty:
            filters = None
        with self._state_lock:
            if self._closed:
                raise StorageError("lexical index is closed")
            searcher = self._searcher
            avg_len = self._avg_len
            postings = {
                term: [self._pending[i] for i in self._tail_terms[term]]
                for term in terms
                if term in self._tail_terms
            }
            tail_docs, tail_len = len(self._pending), dict(self._tail_len)
            shadow = frozenset(self._shadow)
        found = None
        if filters is not None and allowed is not None and k <= UNFILTERED_MAX_K:
            # exact when k of the unfiltered hits pass (a passing memory further down scores
            # no higher than the last of them) or when those were all the matches
            limit = UNFILTERED_FACTOR * (k + len(shadow))
            raw = self._tantivy_search(searcher, terms, None, limit)
            passing = []
            for doc_id, score in self._live(searcher, raw, shadow):
                if allowed(doc_id):  # looked up only until k pass
                    passing.append((doc_id, score))
                    if len(passing) == k:
                        break
            if len(passing) == k or len(raw) < limit:
                found = passing
        if found is None:
            raw = self._tantivy_search(searcher, terms, filters, k + len(shadow))
            found = list(self._live(searcher, raw, shadow))
        hits = dict(found)
        if postings:
            hits.update(self._score_tail(postings, tail_docs, tail_len, searcher, avg_len, filters))
        ranked = sorted(hits.items(), key=lambda item: (-item[1], item[0]))
        return ranked[:k]

    def _tantivy_search(
        self,
        searcher: tantivy.Searcher,
        terms: list[str],
        filters: SearchFilters | None,
        limit: int,
    ) -> list[tuple[float, Any]]:
        """tantivy's top ``limit`` ``(score, address)`` pairs for ``terms`` and ``filters``."""
        try:
            query = self._query(searcher, terms, filters)
            return list(searcher.search(query, limit, count=False).hits)
        except BaseException as exc:  # tantivy: a damaged index file
            if not _index_failure(exc):
                raise
            raise self._unreadable(exc) from exc

    def _live(
        self, searcher: tantivy.Searcher, hits: list[tuple[float, Any]], shadow: frozenset[str]
    ) -> Iterator[tuple[str, float]]:
        """``(id, score)`` of committed hits not replaced or deleted since, in order; ids are
        read from the doc store as they are consumed."""
        for score, address in hits:
            try:
                doc_id = searcher.doc(address).get_first("id")
            except BaseException as exc:
                if not _index_failure(exc):
                    raise
                raise self._unreadable(exc) from exc
            if not isinstance(doc_id, str):  # a document without its id: damaged store
                raise self._unreadable(ValueError("a document has no id"))
            if doc_id not in shadow:
                yield doc_id, float(score)

    def _unreadable(self, exc: BaseException) -> CorruptionError:
        return CorruptionError(
            str(self._path), f"lexical index unreadable ({exc}); run memvid-mcp repair"
        )

    def check(self) -> str | None:
        """Read every committed document's id back; a message when index files are damaged."""
        try:
            self.ids()
        except CorruptionError as exc:
            return str(exc).split(": ", 1)[-1]
        return None

    def has(self, doc_id: str) -> bool:
        """Whether a search can return ``doc_id`` now (committed or not)."""
        with self._state_lock:
            if doc_id in self._pending:
                return True
            if doc_id in self._shadow:
                return False
            searcher = self._searcher
        if searcher.num_docs == 0:
            return False
        hits = searcher.search(tantivy.Query.term_query(self._schema, "id", doc_id), 1)
        return bool(hits.hits)

    def ids(self) -> set[str]:
        """Every id a search can return now (committed, minus replaced or deleted, plus the
        uncommitted tail). Reads every committed document back: verify's full check, raising
        ``CorruptionError`` when index files are damaged."""
        with self._state_lock:
            searcher = self._searcher
            pending = set(self._pending)
            shadow = set(self._shadow)
        found: set[str] = set()
        try:
            count = searcher.num_docs
            if count:
                result = searcher.search(tantivy.Query.all_query(), count, count=False)
                for _score, address in result.hits:
                    found.add(searcher.doc(address)["id"][0])
        except BaseException as exc:
            if not _index_failure(exc):
                raise
            raise CorruptionError(str(self._path), f"lexical index unreadable: {exc}") from exc
        return (found - shadow) | pending

    def _query(
        self, searcher: tantivy.Searcher, terms: list[str], filters: SearchFilters | None
    ) -> tantivy.Query:
        """Every term in the body, and in the boosted speaker field where some committed
        memory has it there (most terms are no one's name: at 100k the extra clauses cost
        15% of the p50 when always added, nothing when checked first)."""
        schema = self._schema
        should = tantivy.Occur.Should
        must = tantivy.Occur.Must
        speaker_boost = SPEAKER_BOOST
        text_q = tantivy.Query.boolean_query(
            [
                *((should, tantivy.Query.term_query(schema, "body", term)) for term in terms),
                *((should, tantivy.Query.boost_query(
                    tantivy.Query.term_query(schema, "speaker", term), speaker_boost))
                  for term in terms if searcher.num_docs and searcher.doc_freq("speaker", term)),
            ]
        )
        if filters is None:
            return text_q
        clauses: list[tuple[tantivy.Occur, tantivy.Query]] = [(must, text_q)]
        for q in self._filter_queries(filters):
            clauses.append((must, tantivy.Query.const_score_query(q, 0.0)))
        return tantivy.Query.boolean_query(clauses)

    def _filter_queries(self, f: SearchFilters) -> list[tantivy.Query]:
        schema = self._schema
        out: list[tantivy.Query] = []
        if f.kind is not None:
            out.append(tantivy.Query.term_query(schema, "kind", f.kind))
        if f.pinned is not None:
            out.append(tantivy.Query.term_query(schema, "pinned", f.pinned))
        if f.tags_any:
            tags = sorted({norm_tag(t) for t in f.tags_any})
            out.append(tantivy.Query.term_set_query(schema, "tags", tags))
        for tag in sorted({norm_tag(t) for t in f.tags_all}):
            out.append(tantivy.Query.term_query(schema, "tags", tag))
        if f.since is not None or f.until is not None:
            lower = _micros(f.since) if f.since is not None else None
            upper = _micros(f.until) if f.until is not None else None
            out.append(
                tantivy.Query.range_query(
                    schema,
                    "created",
                    tantivy.FieldType.Integer,
                    lower,
                    upper,
                    include_lower=True,
                    include_upper=upper is None,
                )
            )
        return out

    def _score_tail(
        self,
        postings: dict[str, list[_Pending]],
        tail_docs: int,
        tail_len: dict[str, int],
        searcher: tantivy.Searcher,
        avg_len: dict[str, float],
        filters: SearchFilters | None,
    ) -> dict[str, float]:
        """BM25 of the uncommitted documents holding a query term, term and field at a time,
        with the statistics tantivy will use after the commit (committed + tail counts and
        lengths; a field's average length counts the documents without it, as tantivy's
        does) and the speaker field's boost."""
        committed = int(searcher.num_docs)
        n_docs = committed + tail_docs
        boosts = {"body": 1.0, "speaker": SPEAKER_BOOST}
        avgs = {f: (avg_len[f] * committed + tail_len[f]) / n_docs or 1.0 for f in _TEXT_FIELDS}
        passes: dict[str, bool] = {}
        out: dict[str, float] = {}
        for term, holders in postings.items():
            for field in _TEXT_FIELDS:
                having = [p for p in holders if term in p.terms[field]]
                if not having:
                    continue
                df = (int(searcher.doc_freq(field, term)) if committed else 0) + len(having)
                weight = boosts[field] * _idf(n_docs, df) * (K1 + 1.0)
                for p in having:
                    doc_id = p.doc.id
                    ok = passes.get(doc_id)
                    if ok is None:
                        d = p.doc
                        ok = filters is None or filters.matches(
                            d.tags, d.kind, d.created_at, d.pinned)
                        passes[doc_id] = ok
                    if ok:
                        tf = p.terms[field][term]
                        norm = K1 * (1.0 - B + B * p.lengths[field] / avgs[field])
                        out[doc_id] = out.get(doc_id, 0.0) + weight * tf / (tf + norm)
        return out

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Release the writer (uncommitted changes are discarded: commit first)."""
        with self._write_lock:
            if self._closed:
                return
            if self._writer is not None and self._dirty:
                log.debug("closing lexical index with uncommitted changes; rolling back")
                with contextlib.suppress(OSError, ValueError, RuntimeError):
                    self._writer.rollback()
            if self._writer is not None:
                with contextlib.suppress(OSError, ValueError, RuntimeError):
                    self._writer.wait_merging_threads()
            self._writer = None
            with self._state_lock:
                self._closed = True

    def __enter__(self) -> LexicalIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
