"""Who may use the gateway: token/password check, failed-login lockout, web sessions.

- Secrets are compared with ``hmac.compare_digest`` (constant time).
- There is always a token or a password, of at least ``MIN_SECRET_CHARS`` characters
  (:func:`check_secrets`; the server refuses to start otherwise, and ``moltbot config
  validate`` says so).
- 10 failed logins in 60 s from one address (an IPv6 /64; loopback included) lock it out, with
  a backoff that doubles per lockout; while locked out even the right token is refused. Too
  many failures from everywhere at once lock every login out for a while (the global budget).
- A successful token/password login issues a fresh web session id; presenting a session id
  rotates it (the old id stops working). Sessions expire after ``idle_s`` without use and
  ``absolute_s`` after the login that created them, whichever comes first. Only a SHA-256 of
  each id is kept in memory.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

from moltbot.clock import Clock
from moltbot.errors import ConfigError, RateLimited, Unauthorized
from moltbot.gateway.frames import AuthParams
from moltbot.security.ratelimit import Lockout

Method = Literal["token", "password", "session"]

MIN_SECRET_CHARS = 32
HOWTO_STRONG = (  # a command line, not a secret
    "python3 -c 'import secrets; print(secrets.token_urlsafe(32))' | moltbot secrets set "
    "gateway_token (then restart), or `moltbot init` on a new home"
)


def check_secrets(token: str | None, password: str | None) -> None:
    """The gateway's credentials are there and strong enough; ``ConfigError`` naming the key
    otherwise (never the value)."""
    if not token and not password:
        raise ConfigError(
            "$.gateway.auth",
            "the gateway has neither a token nor a password: anyone who can reach its port "
            "could drive the assistant and its tools",
            fix='set "token": "secret:gateway_token" and make the secret: ' + HOWTO_STRONG,
        )
    for at, what, value in (("token", "token", token), ("password", "password", password)):
        if value and len(value) < MIN_SECRET_CHARS:
            raise ConfigError(
                f"$.gateway.auth.{at}",
                f"the gateway {what} is {len(value)} characters long; at least "
                f"{MIN_SECRET_CHARS} are required",
                fix="use a long random value: " + HOWTO_STRONG,
            )


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


@dataclass(slots=True)
class _Session:
    created: float
    last_used: float


@dataclass(frozen=True, slots=True)
class Login:
    method: Method
    session: str  # the fresh web session id to hand to the client
    idle_timeout_s: float
    expires_in_s: float


class WebSessions:
    """Web UI sessions with idle and absolute expiry (monotonic time from ``clock``)."""

    def __init__(
        self, clock: Clock, *, idle_s: float, absolute_s: float, max_sessions: int = 1000
    ) -> None:
        self._clock = clock
        self.idle_s = idle_s
        self.absolute_s = absolute_s
        self._max = max_sessions
        self._sessions: OrderedDict[str, _Session] = OrderedDict()

    def _expired(self, s: _Session, now: float) -> bool:
        return now - s.last_used >= self.idle_s or now - s.created >= self.absolute_s

    def _purge(self, now: float) -> None:
        for key in [k for k, s in self._sessions.items() if self._expired(s, now)]:
            del self._sessions[key]
        while len(self._sessions) >= self._max:
            self._sessions.popitem(last=False)

    def issue(self, created: float | None = None) -> str:
        now = self._clock.monotonic()
        self._purge(now)
        session_id = secrets.token_urlsafe(32)
        self._sessions[_digest(session_id)] = _Session(
            created=now if created is None else created, last_used=now
        )
        return session_id

    def alive(self) -> int:
        """How many sessions have not expired (a gateway that sleeps would forget them)."""
        self._purge(self._clock.monotonic())
        return len(self._sessions)

    def valid(self, session_id: str) -> bool:
        s = self._sessions.get(_digest(session_id))
        return s is not None and not self._expired(s, self._clock.monotonic())

    def touch(self, session_id: str) -> bool:
        """Mark a session used now. False (and forgotten) if it is unknown or expired."""
        key = _digest(session_id)
        s = self._sessions.get(key)
        now = self._clock.monotonic()
        if s is None or self._expired(s, now):
            self._sessions.pop(key, None)
            return False
        s.last_used = now
        self._sessions.move_to_end(key)
        return True

    def rotate(self, session_id: str) -> str | None:
        """Swap a valid session for a fresh id keeping its absolute expiry; None if invalid."""
        s = self._sessions.pop(_digest(session_id), None)
        if s is None or self._expired(s, self._clock.monotonic()):
            return None
        return self.issue(created=s.created)

    def remaining(self, session_id: str) -> float:
        s = self._sessions.get(_digest(session_id))
        if s is None:
            return 0.0
        return max(0.0, s.created + self.absolute_s - self._clock.monotonic())


class Authenticator:
    def __init__(
        self,
        *,
        token: str | None,
        password: str | None,
        sessions: WebSessions,
        lockout: Lockout,
    ) -> None:
        self._token = token or None
        self._password = password or None
        self.sessions = sessions
        self._lockout = lockout

    @property
    def required(self) -> bool:
        return self._token is not None or self._password is not None

    def _check(self, auth: AuthParams) -> tuple[Method, str | None] | None:
        if auth.session is not None:
            fresh = self.sessions.rotate(auth.session)
            return ("session", fresh) if fresh else None
        if auth.token is not None and self._token is not None:
            return ("token", None) if _same(auth.token, self._token) else None
        if auth.password is not None and self._password is not None:
            return ("password", None) if _same(auth.password, self._password) else None
        return None  # nothing configured lets nobody in

    def login(self, address: str, auth: AuthParams) -> Login:
        """Check one ``connect``; raises ``RateLimited`` while locked out, else ``Unauthorized``."""
        wait = self._lockout.retry_after(address)
        if wait > 0:
            raise self._locked(wait)
        found = self._check(auth)
        if found is None:
            backoff = self._lockout.failure(address)
            if backoff > 0:
                raise self._locked(backoff)
            raise Unauthorized(
                "authentication failed",
                hint="use the gateway token (moltbot secrets get gateway_token) or log in again",
            )
        self._lockout.success(address)
        method, session_id = found
        if session_id is None:
            session_id = self.sessions.issue()
        return Login(
            method=method,
            session=session_id,
            idle_timeout_s=self.sessions.idle_s,
            expires_in_s=self.sessions.remaining(session_id),
        )

    @staticmethod
    def _locked(wait: float) -> RateLimited:
        return RateLimited(
            "too many failed logins from this address: locked out",
            retry_after=wait,
            hint=f"wait {int(wait) + 1} s before trying again",
        )
