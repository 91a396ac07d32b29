"""The web process's background work, owned by its ASGI application (vmportal.asgi).

That work is libvirt's event loop (domains.virt.initialize) and, without REDIS_URL, the live supervisor
with its watchers (domains.supervisor; with Redis, `manage.py watchhosts` runs them and daphne none).

A server that speaks ASGI's lifespan protocol (uvicorn, hypercorn) starts it at its startup and stops it
at its shutdown. daphne 4.2 does not speak it (it never opens a lifespan scope), so under daphne the first
connection of any kind starts it, on daphne's event loop and before that connection is served (libvirt's
event loop is then registered before the process's first libvirt connection), and the process's exit
stops the watchers: daphne stops its reactor on SIGTERM or SIGINT and returns, and an `atexit` handler
ends the watchers' threads and libvirt connections.
"""

from __future__ import annotations

import atexit
import gc
import logging
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings

from domains import live, supervisor, virt

logger = logging.getLogger(__name__)


class BackgroundWork:
    """ASGI middleware: starts the process's background work before the first connection, or at lifespan startup."""

    def __init__(self, application: Any) -> None:
        self.application = application
        self._by_lifespan = False
        self._stop_at_exit = False
        self._warmed_up = False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if not self._by_lifespan:
            try:
                await self._start()
            except Exception:  # pages still render; the next connection tries again
                logger.exception("starting the live state failed")
            if not self._stop_at_exit:
                atexit.register(supervisor.stop_supervisor_at_exit)
                self._stop_at_exit = True
        await self.application(scope, receive, send)

    async def _start(self) -> None:
        virt.initialize()
        if not self._warmed_up:
            self._warmed_up = True
            await sync_to_async(live.warm_up, thread_sensitive=False)()
            if settings.FREEZE_STARTUP_HEAP:
                # A full collection holds the event loop, and every open page's update, for as long as it
                # walks the heap (150-250 ms at 1,000 open pages, 40 % of it this startup heap).
                gc.collect()
                gc.freeze()
        if supervisor.embedded_watchers_enabled():
            await supervisor.start_supervisor()  # once: a later call on the same loop returns at once

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self._start()
                except Exception as error:
                    logger.exception("starting the live state failed")
                    await send({"type": "lifespan.startup.failed", "message": str(error)})
                    return
                self._by_lifespan = True
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await supervisor.stop_supervisor()
                await send({"type": "lifespan.shutdown.complete"})
                return
