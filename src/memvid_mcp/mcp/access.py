"""What one HTTP session may do: the manager seen through its token's scopes (ADR 0026).

Every tool and resource of an authenticated HTTP session talks to a ``ScopedManager``
instead of the manager itself, so no code path can forget a check:

- a scope named explicitly that the token may not use is an ``AccessDeniedError`` naming the
  scope and the token (a tool error, never a traceback);
- where no scope is named, the defaults shrink quietly to the permitted ones (a search covers
  the permitted default search scopes; get, delete, list and stats look only there);
- a memory in a forbidden scope is answered exactly like one that does not exist (get lists
  it as missing, delete counts 0), so a token cannot even learn that it exists;
- every memory stored records the token's name in ``metadata.stored_by`` (the server's word:
  a client-supplied value is overwritten).
"""

from __future__ import annotations

import builtins
import contextvars
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..core.errors import AccessDeniedError, ScopeError, ValidationError
from ..core.models import SCOPES
from ..core.tokens import Access
from ..core.validation import check_metadata

if TYPE_CHECKING:
    from ..core.models import GetResult, ListResult, SearchResult, Stats, StoreResult
    from ..manager import MemoryManager

__all__ = ["STORED_BY", "ScopedManager", "current_access"]

STORED_BY = "stored_by"

# The access of the request being handled; set per request by the server's middleware from
# what HTTPSecurity authenticated. None: no token is involved (stdio, the service socket, or
# HTTP on loopback without tokens), and the manager is used as it is.
current_access: contextvars.ContextVar[Access | None] = contextvars.ContextVar(
    "memvid_access", default=None)


class ScopedManager:
    """The slice of ``MemoryManager`` the MCP tools use, limited to ``access``'s scopes."""

    def __init__(self, manager: MemoryManager, access: Access) -> None:
        self._m = manager
        self.access = access

    def __repr__(self) -> str:
        return f"ScopedManager({self.access.name!r}, scopes={self.access.scopes})"

    # ------------------------------------------------------------------ scopes
    def _allowed_names(self) -> tuple[str, ...]:
        return tuple(s for s in SCOPES if self.access.allows(s))

    def _available(self) -> list[str]:
        return [s["name"] for s in self._m.scopes() if s["available"]]

    def _check(self, scope: str) -> str:
        name = scope.strip().lower()
        if name in SCOPES and not self.access.allows(name):
            raise AccessDeniedError(name, self.access.name, self._allowed_names())
        return name  # an unknown name is the manager's to explain

    def _check_all(self, scopes: str | Sequence[str]) -> list[str]:
        if isinstance(scopes, str):
            scopes = [s for s in scopes.split(",") if s.strip()]
        return [self._check(s) for s in scopes]

    def _permitted(self, candidates: Sequence[str]) -> list[str]:
        return [s for s in candidates if self.access.allows(s)]

    def _everywhere(self) -> list[str]:
        """Every available scope this token may use; an error when there is none."""
        names = self._permitted(self._available())
        if not names:
            raise ScopeError(f"scope: the token {self.access.name!r} may use "
                             f"{', '.join(self.access.scopes)}, and none of these is "
                             f"available here ({', '.join(self._available())})")
        return names

    @property
    def default_scope(self) -> str:
        default = self._m.default_scope
        return default if self.access.allows(default) else self._everywhere()[0]

    @property
    def search_scopes(self) -> tuple[str, ...]:
        return tuple(self._permitted(self._m.search_scopes) or self._everywhere())

    @property
    def settings(self) -> Any:
        return self._m.settings

    def scopes(self) -> list[dict[str, Any]]:
        default = self.default_scope
        return [{**s, "default": s["name"] == default}
                for s in self._m.scopes() if self.access.allows(s["name"])]

    # ------------------------------------------------------------------ tools
    def store(self, text: str, *, scope: str | None = None, metadata: Any = None,
              supersedes: Any = None, **fields: Any) -> StoreResult:
        if scope is not None:
            scope = self._check(scope)
        elif supersedes:
            scope = self._scope_of(supersedes)
        else:
            scope = self.default_scope
        # any accepted form (object, JSON text, blank) becomes an object first, so the
        # server's stored_by always wins
        metadata = {**check_metadata(metadata, self._m.settings), STORED_BY: self.access.name}
        return self._m.store(text, scope=scope, metadata=metadata, supersedes=supersedes,
                             **fields)

    def _scope_of(self, ids: Sequence[str]) -> str | None:
        """Where superseded memories live, looking only in permitted scopes: an id elsewhere
        is as unknown to this token as an id that does not exist."""
        found = self._m.get(list(ids), scopes=self._everywhere())
        if found.missing:
            raise ValidationError("supersedes", f"no memory {found.missing[0]}")
        scopes = {m.record.scope for m in found.memories}
        return scopes.pop() if len(scopes) == 1 else None  # several: the manager says why

    def search(self, query: str, *, scopes: str | Sequence[str] | None = None,
               **options: Any) -> SearchResult:
        where = self._check_all(scopes) if scopes else list(self.search_scopes)
        return self._m.search(query, scopes=where or list(self.search_scopes), **options)

    def get(self, ids: str | Sequence[str], *, scopes: Sequence[str] | None = None
            ) -> GetResult:
        where = self._check_all(scopes) if scopes else self._everywhere()
        return self._m.get(ids, scopes=where or self._everywhere())

    def delete(self, ids: str | Sequence[str], *, scopes: Sequence[str] | None = None,
               purge: bool = False) -> int:
        where = self._check_all(scopes) if scopes else self._everywhere()
        return self._m.delete(ids, scopes=where or self._everywhere(), purge=purge)

    def list(self, *, scope: str | None = None, **options: Any) -> ListResult:
        if scope:
            return self._m.list(scope=self._check(scope), **options)
        defaults = self.search_scopes
        if len(defaults) == 1:
            return self._m.list(scope=defaults[0], **options)
        # several permitted defaults: with three scopes these are the manager's own pair
        assert tuple(defaults) == tuple(self._m.search_scopes)
        return self._m.list(scope=None, **options)

    def stats(self, scope: str | None = None) -> builtins.list[Stats]:
        if scope:
            return self._m.stats(self._check(scope))
        return [s for s in self._m.stats(None) if self.access.allows(s.scope)]

