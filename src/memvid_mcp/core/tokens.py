"""Named bearer tokens for HTTP serving: who a request is, and which scopes it may use.

A tokens file (``MEMVID_TOKENS_FILE``, ``serve --tokens-file``) is JSON (the standard library
writes it, so ``memvid-mcp token add`` needs nothing extra)::

    {"version": 1, "tokens": [
        {"name": "alice", "sha256": "<hex of sha256(token)>", "scopes": ["global"]},
        {"name": "ci", "sha256": "...", "scopes": ["*"]}]}

Only the SHA-256 of each token is on disk, never the token: tokens are 256-bit random
strings, so a hash is as good as the secret for checking and useless for guessing it. A file
other users may write (they could add a token) or read (names and scopes) is refused. Scopes
are scope names or ``fnmatch`` patterns; ``*`` is every scope. The single token of
``MEMVID_HTTP_TOKEN`` is the entry ``default`` with every scope (ADR 0026).
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import StorageError, ValidationError
from .fsutil import fsync_dir

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_TOKEN_NAME",
    "Access",
    "TokenEntry",
    "TokenTable",
    "add_token",
    "hash_token",
    "load_tokens",
    "remove_token",
]

FORMAT_VERSION = 1
DEFAULT_TOKEN_NAME = "default"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
SCOPE_PATTERN = re.compile(r"^[a-z0-9*?\[\]_.-]{1,64}$")
TOKEN_BYTES = 32  # 256 bits of randomness: no dictionary, no brute force on the hash


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Access:
    """Who a session is (the token's name) and which scopes it may touch."""

    name: str
    scopes: tuple[str, ...] = ("*",)

    @property
    def unlimited(self) -> bool:
        return "*" in self.scopes

    def allows(self, scope: str) -> bool:
        return self.unlimited or any(fnmatch.fnmatchcase(scope, p) for p in self.scopes)


@dataclass(frozen=True, slots=True)
class TokenEntry:
    name: str
    sha256: str
    scopes: tuple[str, ...]

    @property
    def access(self) -> Access:
        return Access(self.name, self.scopes)


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ValidationError("name", f"{name!r} is not a token name: 1-64 letters, digits, "
                              "'_', '.', '@' or '-', starting with a letter or digit")
    return name


def _check_scopes(scopes: Any) -> tuple[str, ...]:
    if isinstance(scopes, str):
        scopes = [s for s in scopes.split(",")]
    if not isinstance(scopes, list | tuple) or not scopes:
        raise ValidationError("scopes", "give at least one scope name or pattern ('*': all)")
    out: list[str] = []
    for scope in scopes:
        cleaned = scope.strip().lower() if isinstance(scope, str) else scope
        if not isinstance(cleaned, str) or not SCOPE_PATTERN.fullmatch(cleaned):
            raise ValidationError("scopes", f"{scope!r} is not a scope name or pattern")
        if cleaned not in out:
            out.append(cleaned)
    return tuple(out)


def _check_file_mode(path: Path, mode: int) -> None:
    """Refuse a tokens file others could change (add a token) or read (names, scopes)."""
    loose = mode & (stat.S_IWGRP | stat.S_IWOTH | stat.S_IROTH)
    if loose:
        raise ValidationError(
            "tokens_file", f"{path} is readable or writable by other users (mode "
            f"{stat.S_IMODE(mode):04o}); run: chmod 600 {path}")


def _parse(path: Path, raw: bytes) -> tuple[TokenEntry, ...]:
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValidationError("tokens_file", f"{path} is not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("tokens"), list):
        raise ValidationError("tokens_file", f"{path}: expected an object with a 'tokens' list")
    if data.get("version", FORMAT_VERSION) != FORMAT_VERSION:
        raise ValidationError("tokens_file", f"{path}: format version {data.get('version')!r} "
                              f"is not {FORMAT_VERSION}; upgrade memvid-mcp")
    entries: list[TokenEntry] = []
    for index, item in enumerate(data["tokens"]):
        where = f"{path}: tokens[{index}]"
        if not isinstance(item, dict):
            raise ValidationError("tokens_file", f"{where} is not an object")
        digest = item.get("sha256")
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise ValidationError("tokens_file", f"{where}: 'sha256' must be 64 hex digits "
                                  "(the file holds hashes, never tokens)")
        try:
            entry = TokenEntry(_check_name(item.get("name")), digest,
                               _check_scopes(item.get("scopes")))
        except ValidationError as exc:
            raise ValidationError("tokens_file", f"{where}: {exc}") from None
        if any(e.name == entry.name for e in entries):
            raise ValidationError("tokens_file", f"{where}: the name {entry.name!r} is taken")
        entries.append(entry)
    return tuple(entries)


def load_tokens(path: Path) -> tuple[TokenEntry, ...]:
    """The entries of a tokens file; a clear ``ValidationError`` for any problem."""
    try:
        with open(path, "rb") as f:
            _check_file_mode(path, os.fstat(f.fileno()).st_mode)
            raw = f.read()
    except FileNotFoundError:
        raise ValidationError("tokens_file", f"{path} does not exist; create it with "
                              "'memvid-mcp token add NAME --scopes ...'") from None
    except OSError as exc:
        raise StorageError(f"{path}: cannot read the tokens file: {exc.strerror}") from None
    return _parse(path, raw)


def _write(path: Path, entries: tuple[TokenEntry, ...]) -> None:
    """Atomically replace the file; born 0600, so no moment exists where others can read it."""
    data = {"version": FORMAT_VERSION,
            "tokens": [{"name": e.name, "sha256": e.sha256, "scopes": list(e.scopes)}
                       for e in entries]}
    body = (json.dumps(data, indent=2) + "\n").encode("utf-8")
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StorageError(f"{path}: cannot write the tokens file: {exc.strerror}") from None


def _existing(path: Path) -> tuple[TokenEntry, ...]:
    return load_tokens(path) if path.exists() else ()


def add_token(path: Path, name: str, scopes: Any) -> str:
    """Append a new token and return it: the only time it is ever shown."""
    entries = _existing(path)
    name = _check_name(name)
    if any(e.name == name for e in entries):
        raise ValidationError("name", f"a token named {name!r} exists in {path}; remove it "
                              "first ('memvid-mcp token remove') or pick another name")
    token = secrets.token_urlsafe(TOKEN_BYTES)
    _write(path, (*entries, TokenEntry(name, hash_token(token), _check_scopes(scopes))))
    return token


def remove_token(path: Path, name: str) -> bool:
    """Drop the entry ``name``; False when there is none."""
    entries = _existing(path)
    kept = tuple(e for e in entries if e.name != name)
    if len(kept) == len(entries):
        return False
    _write(path, kept)
    return True


class TokenTable:
    """The tokens a server accepts: the tokens file (re-read when it changes, so adding or
    removing a token needs no restart) and the single ``MEMVID_HTTP_TOKEN`` as ``default``.

    A tokens file that becomes unreadable or invalid while serving rejects every token from
    it (fail closed) and logs why, until it is fixed.
    """

    def __init__(self, *, path: Path | None = None, single: str | None = None) -> None:
        self.path = path
        self._single = hash_token(single) if single else None
        self._lock = threading.Lock()
        self._seen: tuple[int, int, int] | None = None
        self._entries: tuple[TokenEntry, ...] = ()
        self.error: str | None = None
        if path is not None:
            self._entries = load_tokens(path)  # a bad file fails the start, loudly
            self._seen = self._signature()

    def __repr__(self) -> str:  # never show hashes
        return f"TokenTable(path={self.path}, single={'set' if self._single else 'none'})"

    @property
    def configured(self) -> bool:
        return self.path is not None or self._single is not None

    def _signature(self) -> tuple[int, int, int] | None:
        assert self.path is not None
        try:
            info = os.stat(self.path)
        except OSError:
            return None
        return (info.st_ino, info.st_mtime_ns, info.st_size)

    def entries(self) -> tuple[TokenEntry, ...]:
        """The current entries, reloaded if the file changed since the last look."""
        if self.path is None:
            return ()
        with self._lock:
            seen = self._signature()
            if seen != self._seen:
                self._seen = seen
                try:
                    self._entries, self.error = load_tokens(self.path), None
                    logger.info("tokens file %s reloaded: %d tokens", self.path,
                                len(self._entries))
                except (ValidationError, StorageError) as exc:
                    self._entries, self.error = (), str(exc)
                    logger.error("no token from the tokens file is accepted until it is "
                                 "fixed: %s", exc)
            return self._entries

    def authenticate(self, supplied: str) -> Access | None:
        """The access of the token ``supplied``, or None. Every hash is compared, each in
        constant time, so the answer's timing says nothing about which entry was close."""
        digest = hash_token(supplied).encode()
        found: Access | None = None
        if self._single is not None and hmac.compare_digest(digest, self._single.encode()):
            found = Access(DEFAULT_TOKEN_NAME)
        for entry in self.entries():
            if hmac.compare_digest(digest, entry.sha256.encode()) and found is None:
                found = entry.access
        return found
