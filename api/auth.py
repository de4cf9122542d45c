"""Bearer-token authentication of the API, with three scopes: `read`, `operator` and `admin`.

Each scope includes those below it: `read` queries data, `operator` also acknowledges alarms,
`admin` also operates the service. Tokens live in a small SQLite table beside the other local
state (`PILOTS_DATA_DIR`); operators manage them with `pilots tokens`. Routes declare what they
need with the `ReadAccess`, `OperatorAccess` and `AdminAccess` aliases. The table holds SHA-256
hashes only: a token is shown once, when it is created, and can never be read back. This
module must not log or store token text.

A token file written before the `operator` scope existed (its table's CHECK allows only `read`
and `admin`) is migrated when it is opened: the table is recreated in one transaction with every
row kept (`_migrate`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.problems import Problem
from core.errors import PilotsError

Scope = Literal["read", "operator", "admin"]
SCOPES: tuple[Scope, ...] = get_args(Scope)

#: Each scope includes those of lower rank.
_RANK: dict[str, int] = {"read": 1, "operator": 2, "admin": 3}

DATABASE = "api-tokens.sqlite"
TOKEN_PREFIX = "pt_"  # noqa: S105 -- a public marker that makes leaked tokens greppable
#: `secrets.token_urlsafe(32)`: 32 random bytes are 43 url-safe base64 characters.
TOKEN_LENGTH = len(TOKEN_PREFIX) + 43
NAME_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9._@-]{0,63}")

_TABLE = """
CREATE TABLE IF NOT EXISTS {name} (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    scope TEXT NOT NULL CHECK (scope IN ('read', 'operator', 'admin')),
    sha256 TEXT NOT NULL UNIQUE,
    created_ns INTEGER NOT NULL,
    revoked_ns INTEGER
);
"""
_INDEX = (
    "CREATE UNIQUE INDEX IF NOT EXISTS tokens_live_name ON tokens (name) WHERE revoked_ns IS NULL;"
)
SCHEMA = _TABLE.format(name="tokens") + _INDEX


#: Rows as SQLite returns them; each value is converted where it is read.
_Rows = list[tuple[Any, ...]]


class TokenError(PilotsError):
    """A token could not be created, revoked or looked up."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts as: the token that authenticated it, never the token text."""

    token_id: int
    name: str
    scope: Scope

    def allows(self, scope: Scope) -> bool:
        """Whether this principal's scope includes `scope` (admin includes operator and read)."""
        return _RANK[self.scope] >= _RANK[scope]


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What can be shown about a token: everything except the secret."""

    id: int
    name: str
    scope: Scope
    created_ns: int
    revoked_ns: int | None

    @property
    def live(self) -> bool:
        """Whether the token still authenticates."""
        return self.revoked_ns is None


def _table_sql(db: sqlite3.Connection) -> str:
    row = db.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'tokens'")
    found = row.fetchone()
    return str(found[0]) if found else ""


def _migrate(db: sqlite3.Connection) -> None:
    """Let an older token table hold every scope of `SCOPES`, keeping every row.

    SQLite cannot change a CHECK constraint in place: the table is recreated under the same
    name in one transaction (create, copy, drop, rename, index), so that a crash or a second
    process doing the same leaves either the old table or the new one, never half of each.
    """
    if "'operator'" in _table_sql(db):
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        if "'operator'" not in _table_sql(db):  # another process may have migrated meanwhile
            db.execute("DROP TABLE IF EXISTS tokens_migrating")
            db.execute(_TABLE.format(name="tokens_migrating"))
            db.execute(
                "INSERT INTO tokens_migrating (id, name, scope, sha256, created_ns, revoked_ns) "
                "SELECT id, name, scope, sha256, created_ns, revoked_ns FROM tokens"
            )
            db.execute("DROP TABLE tokens")
            db.execute("ALTER TABLE tokens_migrating RENAME TO tokens")
            db.execute(_INDEX)
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _scope(text: object) -> Scope:
    for scope in SCOPES:
        if text == scope:
            return scope
    raise TokenError(f"unknown scope {text!r} in the token database")


class TokenStore:
    """The API's tokens in a SQLite database (WAL); safe to share between threads.

    Only the SHA-256 of each token is kept. A plain, fast hash is right here: tokens are 256
    random bits, so there is no dictionary or brute-force attack for a slow hash to slow down.
    Slow password hashes (bcrypt, scrypt, Argon2) exist for low-entropy, human-chosen secrets,
    and would only add latency to every request.
    """

    #: Seconds a verified token is trusted before the database is asked again; so a revoked
    #: token stops working within this long (every request asking SQLite costs more than
    #: the rest of a cached answer, in thread hand-offs).
    REMEMBER_S = 1.0

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._verified: dict[str, tuple[float, Principal]] = {}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Hashes cannot be reversed, but whoever can write the file can add a token.
            path.touch(mode=0o600, exist_ok=True)
            self._db = sqlite3.connect(
                path, check_same_thread=False, isolation_level=None, timeout=30
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(SCHEMA)
            _migrate(self._db)
        except (OSError, sqlite3.Error) as exc:
            raise TokenError(f"cannot open the token database {path}: {exc}") from exc

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> TokenStore:
        """The token store of the services whose `PILOTS_DATA_DIR` this is."""
        return cls(data_dir / DATABASE)

    def _run(self, sql: str, params: Sequence[object] = ()) -> tuple[_Rows, int]:
        """The rows a statement returns and how many it changed.

        `sqlite3.IntegrityError` passes through: only the caller knows what it means.
        """
        with self._lock:
            try:
                cursor = self._db.execute(sql, params)
                return cursor.fetchall(), cursor.rowcount
            except sqlite3.IntegrityError:
                raise
            except sqlite3.Error as exc:
                raise TokenError(f"token database {self.path}: {exc}") from exc

    def create(self, name: str, scope: Scope) -> str:
        """Make a token and return it; this is the only time its text is available.

        `name` (a letter, then up to 63 letters, digits or `._@-`) must not be the name of
        another live token; the name of a revoked token may be reused.
        """
        if not NAME_PATTERN.fullmatch(name):
            raise TokenError(
                f"token name {name!r}: use a letter, then up to 63 letters, digits or ._@-"
            )
        if scope not in SCOPES:
            raise TokenError(f"scope {scope!r}: use one of {', '.join(SCOPES)}")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        try:
            self._run(
                "INSERT INTO tokens (name, scope, sha256, created_ns) VALUES (?, ?, ?, ?)",
                (name, scope, _digest(token), time.time_ns()),
            )
        except sqlite3.IntegrityError as exc:
            raise TokenError(
                f"a live token is already named {name!r}; revoke it or choose another name"
            ) from exc
        return token

    def revoke(self, name_or_id: str | int) -> bool:
        """Revoke the live token of this name or id; False when there is none."""
        text = str(name_or_id)
        # Names start with a letter, so a number can only be an id.
        column = "id" if text.isdecimal() else "name"
        _, changed = self._run(
            f"UPDATE tokens SET revoked_ns = ? WHERE {column} = ? AND revoked_ns IS NULL",  # noqa: S608
            (time.time_ns(), int(text) if column == "id" else text),
        )
        self._verified.clear()  # this process forgets at once; others within REMEMBER_S
        return changed > 0

    def list(self, *, include_revoked: bool = False) -> list[TokenInfo]:
        """The tokens, oldest first, without their secrets; live ones only unless asked."""
        sql = "SELECT id, name, scope, created_ns, revoked_ns FROM tokens"
        if not include_revoked:
            sql += " WHERE revoked_ns IS NULL"
        rows, _ = self._run(sql + " ORDER BY id")
        return [
            TokenInfo(
                int(id_),
                str(name),
                _scope(scope),
                int(created),
                None if revoked is None else int(revoked),
            )
            for id_, name, scope, created, revoked in rows
        ]

    def verify(self, token: str) -> Principal | None:
        """Who this token authenticates, or None when it is unknown, malformed or revoked."""
        if len(token) != TOKEN_LENGTH or not token.startswith(TOKEN_PREFIX):
            return None
        digest = _digest(token)
        remembered = self._verified.get(digest)
        if remembered is not None and time.monotonic() - remembered[0] < self.REMEMBER_S:
            return remembered[1]
        rows, _ = self._run(
            "SELECT id, name, scope, sha256 FROM tokens WHERE sha256 = ? AND revoked_ns IS NULL",
            (digest,),
        )
        # The index lookup only sees a hash the caller cannot steer; comparing in constant time
        # keeps that true should the lookup ever become a prefix or range match.
        if not rows or not hmac.compare_digest(str(rows[0][3]), digest):
            return None
        id_, name, scope, _ = rows[0]
        principal = Principal(int(id_), str(name), _scope(scope))
        if len(self._verified) > 10_000:  # bounded: only live tokens get here
            self._verified.clear()
        self._verified[digest] = (time.monotonic(), principal)
        return principal

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()


bearer = HTTPBearer(
    auto_error=False,
    scheme_name="token",
    description="A token from `pilots tokens create`: read scope for data, operator also to "
    "acknowledge alarms, admin also for operations.",
)


def _unauthorized(detail: str, challenge: str = "Bearer") -> HTTPException:
    # `Problem` carries no headers; the problem handler renders any HTTPException's headers.
    # RFC 6750 section 3.1: an error code only when a bearer token was sent and is bad.
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": challenge})


def require(scope: Scope) -> Callable[..., Principal]:
    """A dependency that authenticates the request's bearer token and demands `scope`."""
    if scope not in SCOPES:
        raise ValueError(f"scope {scope!r}: use one of {', '.join(SCOPES)}")

    def authenticate(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        store: TokenStore | None = getattr(request.app.state, "tokens", None)
        if store is None:
            # Fail closed: an app without a token store must not serve protected routes.
            raise RuntimeError("app.state.tokens is not set; the app needs a TokenStore")
        if credentials is None:
            if "authorization" in request.headers:
                raise _unauthorized("the Authorization header must be `Bearer <token>`")
            raise _unauthorized(
                "this needs a token: send `Authorization: Bearer <token>` "
                "(operators create tokens with `pilots tokens create`)"
            )
        principal = store.verify(credentials.credentials)
        if principal is None:
            raise _unauthorized("the token is unknown or revoked", 'Bearer error="invalid_token"')
        if not principal.allows(scope):
            raise Problem(
                403,
                f"token {principal.name!r} has the {principal.scope} scope; this needs the "
                f"{scope} scope",
            )
        return principal

    return authenticate


ReadAccess = Annotated[Principal, Depends(require("read"))]
OperatorAccess = Annotated[Principal, Depends(require("operator"))]
AdminAccess = Annotated[Principal, Depends(require("admin"))]
