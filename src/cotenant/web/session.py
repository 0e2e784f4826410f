"""Console sessions: an API key signed in once, then a random session id in an HttpOnly,
SameSite=Strict cookie. The key stays on the server (in memory, with its session), and
every request checks it again against the key ring, so a revoked key ends its sessions
at once. Each session has its own CSRF token, which every state-changing form carries.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

COOKIE = "cotenant_session"
MAX_SESSIONS = 10_000
IDLE_S = 12 * 3600


@dataclass(slots=True)
class Session:
    sid: str
    token: str  # the API key; checked against the key ring on every request
    csrf: str
    last_s: float


class Sessions:
    """Sessions in memory, oldest dropped first beyond ``MAX_SESSIONS``; a restart signs
    everyone out (sign in again with the same key)."""

    def __init__(self, max_sessions: int = MAX_SESSIONS, idle_s: float = IDLE_S) -> None:
        self._lock = threading.Lock()
        self._by_id: OrderedDict[str, Session] = OrderedDict()
        self.max_sessions = max_sessions
        self.idle_s = idle_s

    def open(self, token: str) -> Session:
        s = Session(secrets.token_urlsafe(32), token, secrets.token_urlsafe(24), time.monotonic())
        with self._lock:
            self._by_id[s.sid] = s
            while len(self._by_id) > self.max_sessions:
                self._by_id.popitem(last=False)
        return s

    def get(self, sid: str | None) -> Session | None:
        if not sid or len(sid) > 100:
            return None
        now = time.monotonic()
        with self._lock:
            s = self._by_id.get(sid)
            if s is None:
                return None
            if now - s.last_s > self.idle_s:
                del self._by_id[sid]
                return None
            s.last_s = now
            self._by_id.move_to_end(sid)
            return s

    def close(self, sid: str | None) -> None:
        if sid:
            with self._lock:
                self._by_id.pop(sid, None)


def csrf_ok(session: Session, sent: str | None) -> bool:
    return sent is not None and hmac.compare_digest(session.csrf.encode(), sent.encode())
