"""The PostgreSQL side of the team engine: a connection pool, the schema, clear errors.

Every psycopg failure leaves as our own ``StorageError`` naming the database (never a driver
traceback to the agent); the password never appears in a message.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from typing import Any

from ..core.errors import StorageError
from .schema import MIGRATIONS, SCHEMA_LOCK, SCHEMA_VERSION, scope_index_name, scope_index_sql

log = logging.getLogger(__name__)


def redact_url(url: str) -> str:
    """The URL without its password."""
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)


class Database:
    """A psycopg 3 pool on one database, with the memvid tables in place."""

    def __init__(self, url: str, *, max_size: int = 8, timeout: float = 5.0) -> None:
        import psycopg
        from psycopg_pool import ConnectionPool

        self.url = url
        self.name = redact_url(url)
        self._psycopg = psycopg
        _check_url(url, self.name)
        _probe(url, self.name, timeout)
        self.pool = ConnectionPool(url, min_size=1, max_size=max_size, timeout=timeout,
                                   open=False, kwargs={"autocommit": True})
        try:
            self.pool.open(wait=True, timeout=timeout)
        except Exception as exc:
            self.pool.close()
            raise StorageError(f"database {self.name} is unreachable "
                               f"({_reason(exc, url)}); check MEMVID_DATABASE_URL") from None
        try:
            self._ensure_schema()
        except BaseException:
            self.pool.close()
            raise

    @contextlib.contextmanager
    def connection(self) -> Iterator[Any]:
        """A pooled connection (autocommit; use ``conn.transaction()`` for atomic work)."""
        with self.errors(), self.pool.connection() as conn:
            yield conn

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Any]:
        """A connection inside one transaction: committed when the block ends."""
        with self.connection() as conn, conn.transaction():
            yield conn

    @contextlib.contextmanager
    def errors(self) -> Iterator[None]:
        psycopg = self._psycopg
        try:
            yield
        except psycopg.errors.UniqueViolation:
            raise  # callers retry these
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise StorageError(f"database {self.name} is unreachable ({_reason(exc)})") from None
        except psycopg.Error as exc:
            raise StorageError(f"database {self.name}: {_reason(exc)}") from None
        except Exception as exc:
            if type(exc).__name__ == "PoolTimeout":
                raise StorageError(f"database {self.name}: no connection within the pool "
                                   f"timeout ({_reason(exc)})") from None
            raise

    def _ensure_schema(self) -> None:
        with self.transaction() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            conn.execute("CREATE TABLE IF NOT EXISTS memvid_schema (version integer NOT NULL)")
            row = conn.execute("SELECT max(version) FROM memvid_schema").fetchone()
            current = row[0] or 0 if row else 0
            if current > SCHEMA_VERSION:
                raise StorageError(f"database {self.name} holds team schema version {current}; "
                                   f"this memvid-mcp knows up to {SCHEMA_VERSION}: upgrade it")
            for version in range(current + 1, SCHEMA_VERSION + 1):
                log.info("database %s: creating/migrating the team schema to version %d",
                         self.name, version)
                conn.execute(MIGRATIONS[version])
                conn.execute("DELETE FROM memvid_schema")
                conn.execute("INSERT INTO memvid_schema (version) VALUES (%s)", (version,))

    def ensure_scope_index(self, key: str) -> None:
        """Scope ``key``'s vector index (schema version 3), made on the scope's first open;
        instances opening it at once wait for the one that makes it."""
        with self.connection() as conn:
            if conn.execute("SELECT to_regclass(%s)", (scope_index_name(key),)).fetchone()[0]:
                return
        with self.transaction() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            log.info("database %s: creating the vector index of scope %s", self.name, key)
            conn.execute("SET LOCAL maintenance_work_mem = '256MB'")
            conn.execute(scope_index_sql(key))

    def close(self) -> None:
        self.pool.close()


def _reason(exc: BaseException, url: str | None = None) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if url is not None:  # driver messages may quote the connection string, password and all
        text = text.replace(url, redact_url(url))
        password = _password(url)
        if password:
            text = text.replace(password, "***")
    return text


def _password(url: str) -> str | None:
    match = re.search(r"://[^:/@]*:([^@/]*)@", url)
    return match.group(1) if match else None


def _check_url(url: str, name: str) -> None:
    """A malformed URL is refused at once: the pool would retry it until its timeout, logging
    a warning per attempt, and then call a typo "unreachable"."""
    from psycopg.conninfo import conninfo_to_dict

    if not url.startswith(("postgresql://", "postgres://")):
        raise StorageError(f"MEMVID_DATABASE_URL {name} is malformed: it must start with "
                           "postgresql://")
    try:
        params = conninfo_to_dict(url)
    except Exception as exc:
        raise StorageError(f"MEMVID_DATABASE_URL {name} is malformed: "
                           f"{_reason(exc, url)}") from None
    for port in str(params.get("port") or "").split(","):
        if port and not port.isdigit():
            raise StorageError(f"MEMVID_DATABASE_URL {name} is malformed: port {port!r} is "
                               "not a number")


def _probe(url: str, name: str, timeout: float) -> None:
    """One direct connection first, so a wrong host, password or database name is one clear
    error naming the cause, not a pool retrying it in the background."""
    import psycopg

    try:
        psycopg.connect(url, connect_timeout=max(1, round(timeout))).close()
    except Exception as exc:
        raise StorageError(f"database {name} is unreachable ({_reason(exc, url)}); check "
                           "MEMVID_DATABASE_URL") from None
