"""Every live socket of a process re-checked together: the session and the rights its page relies on.

Sessions expire, passwords change, users are deactivated or demoted (the admin site), and grants reach a
user's groups, with no broadcast to say so: every LIVE_RECHECK_SECONDS the hub (domains.hub) tells each of
its sockets to look again. A thousand pages re-checking on timers of their own cost a thousand thread hops
and twice as many queries each interval, competing with the pushes for the event loop. Here the sockets
that ask within one turn of the loop are answered by one read off it: each distinct session once, each
distinct user's rights once.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import TYPE_CHECKING, NamedTuple

from channels.db import database_sync_to_async

from accounts.sessions import session_user

from .access import Scope, domain_scope

if TYPE_CHECKING:
    from accounts.models import User

logger = logging.getLogger(__name__)


class Standing(NamedTuple):
    """A session as it is now: its user (None once the session ended) and that user's rights."""

    user: User | None
    granted: Scope


class Rechecks:
    """The re-checks of one event loop's sockets, gathered while the loop turns and read together."""

    def __init__(self) -> None:
        self._waiting: dict[str, list[asyncio.Future[Standing]]] = {}

    async def standing(self, session_key: str) -> Standing:
        loop = asyncio.get_running_loop()
        if not self._waiting:  # the first to ask: the read starts once the others woken with it have asked
            loop.call_soon(lambda: asyncio.ensure_future(self._read_waiting()))
        answer: asyncio.Future[Standing] = loop.create_future()  # its own: one socket closing cancels only its own
        self._waiting.setdefault(session_key, []).append(answer)
        return await answer

    async def _read_waiting(self) -> None:
        waiting, self._waiting = self._waiting, {}
        try:
            standings = await database_sync_to_async(_read)(list(waiting))
        except Exception as error:  # said once here; each socket counts its failures (consumers.RECHECK_FAILURES)
            logger.warning("re-checking the live sockets of %d sessions failed", len(waiting), exc_info=True)
            for answers in waiting.values():
                for answer in answers:
                    if not answer.done():
                        answer.set_exception(error)
            return
        for session_key, answers in waiting.items():
            for answer in answers:
                if not answer.done():
                    answer.set_result(standings[session_key])


def _read(session_keys: list[str]) -> dict[str, Standing]:
    users = {session_key: session_user(session_key) for session_key in session_keys}
    scopes: dict[int, Scope] = {}
    for user in users.values():
        if user is not None and user.pk not in scopes:
            scopes[user.pk] = domain_scope(user)
    return {session_key: Standing(user, scopes[user.pk] if user is not None else {})
            for session_key, user in users.items()}


_rechecks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Rechecks] = weakref.WeakKeyDictionary()


def running_rechecks() -> Rechecks:
    """The running loop's re-checks (tests run a loop per test)."""
    loop = asyncio.get_running_loop()
    rechecks = _rechecks.get(loop)
    if rechecks is None:
        rechecks = _rechecks[loop] = Rechecks()
    return rechecks
