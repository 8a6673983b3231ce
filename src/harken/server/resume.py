"""Sessions whose connection dropped, kept for a reconnect (``resume_window`` seconds).

A socket that closes without a close frame (a network blip, a client restarting its
connection) suspends its session (:meth:`harken.session.session.Session.suspend`: every turn
in progress ends, a reply is cut to what the client can have played, the conversation stays).
A new connection that carries the same ``x-deepgram-session-id`` and the same credential within
the window takes the session over: Welcome again, no Settings needed (the JavaScript SDK
reconnects on any close but 1000 and does not resend them). Another credential never resumes
someone else's session; after the window the session is gone.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass

from harken.session.session import Session

log = logging.getLogger("harken.server")


@dataclass(slots=True)
class _Parked:
    session: Session
    credential: str
    expiry: asyncio.TimerHandle | None = None


class Parking:
    """The suspended sessions, by client session id."""

    def __init__(self, window: float, on_expired: Callable[[Session], None]) -> None:
        self.window = window
        self._on_expired = on_expired
        self._parked: dict[str, _Parked] = {}

    def __len__(self) -> int:
        return len(self._parked)

    def park(self, client_session: str, credential: str | None, session: Session) -> None:
        """Keep ``session`` for ``window`` seconds (a session already parked under the same
        id is given up: the newest connection owns the id)."""
        previous = self._parked.pop(client_session, None)
        if previous is not None:
            self._expire(previous)
        parked = _Parked(session, credential or "")
        loop = asyncio.get_running_loop()
        parked.expiry = loop.call_later(self.window, self._timeout, client_session, parked)
        self._parked[client_session] = parked
        log.info("session %s suspended for %.0f s", session.request_id, self.window)

    def take(self, client_session: str | None, credential: str | None) -> Session | None:
        """The session to resume, if ``client_session`` names one this credential owns."""
        if client_session is None:
            return None
        parked = self._parked.get(client_session)
        if parked is None:
            return None
        if not hmac.compare_digest(parked.credential, credential or ""):
            log.warning("a reconnect named a suspended session with another credential")
            return None
        del self._parked[client_session]
        if parked.expiry is not None:
            parked.expiry.cancel()
        return parked.session

    def clear(self) -> None:
        for parked in list(self._parked.values()):
            self._expire(parked)
        self._parked.clear()

    def _timeout(self, client_session: str, parked: _Parked) -> None:
        if self._parked.get(client_session) is parked:
            del self._parked[client_session]
            log.info("session %s was not resumed in time", parked.session.request_id)
            self._expire(parked)

    def _expire(self, parked: _Parked) -> None:
        if parked.expiry is not None:
            parked.expiry.cancel()
        self._on_expired(parked.session)
