"""Console authentication: argon2 password hashes, server-side sessions whose random ids are
stored hashed, a CSRF token per session, and a login rate limit per address and per user.

A session ends after `session_idle_s` without a request or `session_max_s` after login,
whichever comes first, and at logout. The cookie carries only the random id.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Engine

from infernode.console.config import ConsoleConfig, ConsoleUser, Role
from infernode.console.tables import console_sessions

COOKIE = "infernode_session"
LOCAL = "local"
OIDC = "oidc"

_hasher = PasswordHasher()
# verified against when the user name is unknown, so both cases cost the same time
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


def hash_password(password: str) -> str:
    """An argon2id hash (PHC string) of `password` for the `console.users` setting."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _naive(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class Session:
    user: str
    role: Role
    csrf_token: str
    created_at: datetime


class LoginLimiter:
    """Failed logins counted per key (address, user name) in a sliding window; in memory, so
    a restart forgets them (the sessions themselves live in the database)."""

    def __init__(self, attempts: int, window_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.attempts, self.window_s, self.clock = attempts, window_s, clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str) -> deque[float]:
        found = self._failures.setdefault(key, deque())
        cutoff = self.clock() - self.window_s
        while found and found[0] < cutoff:
            found.popleft()
        return found

    def _forget_quiet(self) -> None:
        """Drops keys without a failure in the window, so the table stays small."""
        cutoff = self.clock() - self.window_s
        for key in [k for k, v in self._failures.items() if not v or v[-1] < cutoff]:
            del self._failures[key]

    def blocked(self, *keys: str) -> bool:
        with self._lock:
            found = any(len(self._recent(k)) >= self.attempts for k in keys)
            for key in keys:
                if not self._failures.get(key):
                    self._failures.pop(key, None)
            return found

    def failed(self, *keys: str) -> None:
        with self._lock:
            if len(self._failures) > 10_000:
                self._forget_quiet()
            for key in keys:
                self._recent(key).append(self.clock())

    def succeeded(self, user_key: str) -> None:
        with self._lock:
            self._failures.pop(user_key, None)


class Authenticator:
    """Checks passwords against the configured users and keeps sessions in the database."""

    def __init__(self, engine: Engine, cfg: ConsoleConfig,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.engine, self.cfg, self.clock = engine, cfg, clock
        self.limiter = LoginLimiter(cfg.login_attempts, cfg.login_window_s)

    def user(self, name: str) -> ConsoleUser | None:
        return next((u for u in self.cfg.users if hmac.compare_digest(u.name, name)), None)

    def check_password(self, name: str, password: str) -> ConsoleUser | None:
        user = self.user(name)
        ok = verify_password(user.password_hash if user else _DUMMY_HASH, password)
        return user if ok and user is not None else None

    def open_session(self, name: str, role: Role, source: str | None,
                     origin: str = LOCAL) -> tuple[str, Session]:
        """A new session for user `name` signed on locally or by OIDC (`origin`); returns
        the cookie value (shown once) and the session."""
        session_id = secrets.token_urlsafe(32)
        now = _naive(self.clock())
        csrf = secrets.token_urlsafe(32)
        with self.engine.begin() as conn:
            conn.execute(console_sessions.insert().values(
                id_sha256=_sha256(session_id), user_name=name, role=str(role),
                origin=origin, csrf_token=csrf, source=(source or "")[:256], created_at=now,
                last_seen_at=now))
        return session_id, Session(name, role, csrf, now.replace(tzinfo=UTC))

    def session(self, session_id: str | None) -> Session | None:
        """The live session of a cookie value, its idle timer restarted; None when unknown,
        ended, idle too long, past its absolute lifetime, or its local user no longer configured
        with that role (an OIDC session keeps the role it got at login while OIDC stays
        configured)."""
        if not session_id:
            return None
        key = _sha256(session_id)
        now = _naive(self.clock())
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(console_sessions).where(
                console_sessions.c.id_sha256 == key)).mappings().first()
            if row is None or row["ended_at"] is not None:
                return None
            if row["origin"] == OIDC:
                known = self.cfg.oidc is not None
            else:
                user = self.user(row["user_name"])
                known = user is not None and str(user.role) == row["role"]
            expired = (now - row["last_seen_at"] > timedelta(seconds=self.cfg.session_idle_s)
                       or now - row["created_at"] > timedelta(seconds=self.cfg.session_max_s))
            if expired or not known:
                conn.execute(console_sessions.update().where(
                    console_sessions.c.id_sha256 == key).values(ended_at=now))
                return None
            conn.execute(console_sessions.update().where(
                console_sessions.c.id_sha256 == key).values(last_seen_at=now))
        return Session(row["user_name"], Role(row["role"]), row["csrf_token"],
                       row["created_at"].replace(tzinfo=UTC))

    def end_session(self, session_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(console_sessions.update().where(
                console_sessions.c.id_sha256 == _sha256(session_id),
                console_sessions.c.ended_at.is_(None)).values(ended_at=_naive(self.clock())))


def csrf_ok(session: Session, submitted: str | None) -> bool:
    return submitted is not None and hmac.compare_digest(session.csrf_token, submitted)
