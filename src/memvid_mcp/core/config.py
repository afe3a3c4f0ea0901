"""Settings: defaults, then ``MEMVID_*`` environment variables, then explicit arguments.

The CLI passes its flags as explicit arguments, so flags beat the environment. The data
directory defaults to the platform's user data directory (platformdirs).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from platformdirs import user_cache_dir, user_data_dir

from .errors import ValidationError

BACKENDS = ("file", "video")
VIDEO_PROFILES = ("archival", "portable")
ENV_PREFIX = "MEMVID_"


def default_data_dir() -> Path:
    return Path(user_data_dir("memvid-mcp", appauthor=False))


def check_chosen_data_dir(path: Path) -> Path:
    """A data directory the user named (``--data-dir``, ``MEMVID_DATA_DIR``) may be new, but
    its parent must exist: a typo fails here instead of silently creating a whole new tree.
    (The default one is created with its parents.)"""
    if path.exists():
        if not path.is_dir():
            raise ValidationError("data_dir", f"{path} exists and is not a directory")
        return path
    if not path.parent.is_dir():
        raise ValidationError(
            "data_dir",
            f"neither {path} nor its parent {path.parent} exists; only the last level of "
            "--data-dir (MEMVID_DATA_DIR) is created: check the path, or create the parent "
            "first",
        )
    return path


def default_cache_dir() -> Path:
    """Converted models, shared by every process and data directory of the user (ADR 0015)."""
    return Path(user_cache_dir("memvid-mcp", appauthor=False))


@dataclass(frozen=True, slots=True)
class Settings:
    """Every tunable, with the default a user gets without configuring anything."""

    data_dir: Path = Path()
    cache_dir: Path | None = None  # converted models; None: default_cache_dir()
    backend: str = "video"  # of new scopes (ADR 0020, ADR 0029); existing ones keep theirs
    project: Path | None = None  # a path inside the repository for the project scopes
    read_only: bool = False
    read_only_fallback: bool = False  # when locked past the timeout: open read-only, not fail
    lock_timeout: float = 10.0  # seconds a second writer waits for the scope lock
    # HTTP serving: named tokens with their scopes (core/tokens.py, ADR 0026); None: only
    # MEMVID_HTTP_TOKEN, if set, as the one token "default" with every scope
    tokens_file: Path | None = None
    # HTTP serving without MCP sessions: every request stands alone, so instances behind a
    # round-robin proxy can answer any request (docs/team.md)
    http_stateless: bool = False

    # input limits
    max_text_bytes: int = 1024 * 1024
    max_tags: int = 64
    max_tag_chars: int = 64
    max_metadata_bytes: int = 64 * 1024
    max_title_chars: int = 512
    redact_secrets: bool = True

    # background batching of bodies into storage. The file backend stores a batch every
    # batch_max_seconds; the video backend seals a segment once seal_min_bytes of text (or
    # batch_max_memories bodies) wait, or the oldest waited seal_max_seconds (ADR 0018)
    batch_max_memories: int = 256
    batch_max_seconds: float = 2.0
    seal_min_bytes: int = 64 * 1024
    seal_max_seconds: float = 900.0
    checkpoint_wal_bytes: int = 64 * 1024 * 1024

    # video backend: background compaction, and how long deleted text may stay in a segment
    auto_compact: bool = True
    purge_after_seconds: float = 900.0

    # video backend
    video_profile: str = "archival"
    compact_live_threshold: float = 0.70
    payload_cache_bytes: int = 64 * 1024 * 1024

    # search
    embed_model: str = "sentence-transformers/all-MiniLM-L6-v2"
    embed_provider: str = "onnx-int8"  # int8 per-channel (ADR 0007 addendum 2); "onnx"
    # (float32) or "sentence-transformers" (any model it supports; the [torch] extra)
    embeddings: bool = True  # False: lexical search only, no model is ever loaded
    embed_batch: int = 8
    embed_threads: int = 0  # document batches embedded at once; 0: min(4, CPU count)
    fusion: str = "zscore"  # how hybrid search combines the lists: "zscore" or "rrf"
    rrf_k: int = 60
    lexical_weight: float = 1.0
    semantic_weight: float = 1.0
    recency_weight: float = 0.0  # 0-1: newer memories move up (0: recency breaks ties only)
    exact_vector_limit: int = 20_000  # below this many vectors, search is exact

    # the team engine (ADR 0025): records and indexes in PostgreSQL, sealed segments in an
    # S3-compatible bucket; both unset: every scope stays embedded in data_dir
    database_url: str | None = None  # postgresql://user:pass@host:port/db
    segment_url: str | None = None  # s3://bucket/prefix (endpoint, keys: the AWS_* variables)
    segment_cache_bytes: int = 256 * 1024 * 1024  # local read-through cache of segment files

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``MEMVID_<FIELD>`` variables, then explicit overrides.

        Overrides that are None are ignored, so CLI flags left unset fall back to the env.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {"data_dir": default_data_dir()}
        for f in fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = _coerce(f.name, f.type, raw)
        for name, value in overrides.items():
            if value is not None:
                values[name] = value
        settings = cls(**values)
        settings.validate()
        return settings

    def replace(self, **changes: Any) -> Settings:
        settings = replace(self, **changes)
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.backend not in BACKENDS:
            raise ValidationError("backend", f"must be one of {', '.join(BACKENDS)}")
        if self.video_profile not in VIDEO_PROFILES:
            raise ValidationError("video_profile", f"must be one of {', '.join(VIDEO_PROFILES)}")
        if not 0.0 < self.compact_live_threshold <= 1.0:
            raise ValidationError("compact_live_threshold", "must be in (0, 1]")
        if self.fusion not in ("zscore", "rrf"):
            raise ValidationError("fusion", "must be zscore or rrf")
        if self.batch_max_memories < 1:
            raise ValidationError("batch_max_memories", "must be at least 1")
        if self.seal_min_bytes < 1:
            raise ValidationError("seal_min_bytes", "must be at least 1")
        for name in ("batch_max_seconds", "seal_max_seconds", "purge_after_seconds"):
            if not getattr(self, name) >= 0:
                raise ValidationError(name, "must be 0 or more seconds")
        if (self.database_url is None) != (self.segment_url is None):
            raise ValidationError("database_url", "the team engine needs both "
                                  "MEMVID_DATABASE_URL and MEMVID_SEGMENT_URL (or neither)")
        if self.database_url is not None and not self.database_url.startswith(
                ("postgresql://", "postgres://")):
            raise ValidationError("database_url", "must be a postgresql:// URL")
        if self.segment_url is not None and not self.segment_url.startswith("s3://"):
            raise ValidationError("segment_url", "must be an s3://bucket/prefix URL")
        object.__setattr__(self, "data_dir", Path(self.data_dir).expanduser())
        if self.cache_dir is not None:
            object.__setattr__(self, "cache_dir", Path(self.cache_dir).expanduser())
        if self.project is not None:
            object.__setattr__(self, "project", Path(self.project).expanduser())
        if self.tokens_file is not None:
            # absolute: the service serving HTTP runs in "/", not in the caller's directory
            object.__setattr__(self, "tokens_file",
                               Path(self.tokens_file).expanduser().absolute())


def _coerce(name: str, annotation: Any, raw: str) -> Any:
    kind = str(annotation)
    try:
        if "bool" in kind:
            lowered = raw.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if "Path" in kind:
            return Path(raw).expanduser()
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError:
        raise ValidationError(ENV_PREFIX + name.upper(), f"cannot read {raw!r} as {kind}") from None
    return raw
