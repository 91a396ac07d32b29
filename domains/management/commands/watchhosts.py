"""manage.py watchhosts: the libvirt watchers of a Redis deployment, in a process of their own.

With REDIS_URL, the daphne processes only consume live state; this process runs one watcher per
enabled host (following the Hosts page as it changes, replacing a watcher that died) and publishes
through channels-redis. It owns that work: libvirt's event loop is initialised first, and SIGINT or
SIGTERM stops the watchers and gives up the lease.
A second copy waits as a standby: the one holding the lease in the shared cache watches, so there
is never more than one watcher per host. While Redis is away nobody can take the lease over: the watchers
go on (their events wait in their history for the pages' replays), and a restarted Redis that forgot the
lease has it taken again by its holder.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache import cache
from django.core.management.base import BaseCommand, CommandError, CommandParser

from domains import catalog, virt
from domains.supervisor import Supervisor

LEASE_KEY = "live:watchhosts:lease"
# A holder that dies (killed, its machine gone) leaves the lease to expire; a standby looks every
# RENEW_SECONDS, so it takes over within LEASE_SECONDS + RENEW_SECONDS (8 s) of the last renewal.
LEASE_SECONDS = 6
RENEW_SECONDS = 2


class Command(BaseCommand):
    help = "Watch every enabled host's libvirt events and publish them to the shared channel layer (needs REDIS_URL)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--resync-seconds", type=float, default=30.0,
                            help="full listing of each host this often, for changes without an event (default 30)")

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.REDIS_URL:
            raise CommandError("watchhosts publishes for other processes and needs REDIS_URL; without it, "
                               "daphne runs the watchers itself.")
        virt.initialize()
        asyncio.run(self._main(options["resync_seconds"]))

    async def _main(self, resync_seconds: float) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        me = f"{socket.gethostname()}:{os.getpid()}"
        waiting_said = False
        while not stop.is_set():
            if await sync_to_async(_take_lease)(me):
                self.stdout.write(f"watching every enabled host ({me})", ending="\n")
                self.stdout.flush()
                await self._watch(me, stop, resync_seconds)
                waiting_said = False
                continue
            if not waiting_said:
                self.stdout.write("another watchhosts holds the lease; standing by", ending="\n")
                self.stdout.flush()
                waiting_said = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), RENEW_SECONDS)

    async def _watch(self, me: str, stop: asyncio.Event, resync_seconds: float) -> None:
        supervisor = Supervisor(watcher_options={"resync_seconds": resync_seconds}, publisher=catalog.Publisher())
        running = asyncio.create_task(supervisor.run())
        try:
            while not stop.is_set() and not running.done():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), RENEW_SECONDS)
                try:
                    holds = await sync_to_async(_renew)(me)
                except Exception as error:  # Redis is away: nobody else can take the lease meanwhile
                    self.stderr.write(f"cannot renew the watchhosts lease ({error}); watching on")
                    continue
                if not holds:
                    self.stderr.write("lost the watchhosts lease; stopping these watchers")
                    break
        finally:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
            await supervisor.stop()
            with contextlib.suppress(Exception):  # Redis away: the lease expires by itself
                if await sync_to_async(cache.get)(LEASE_KEY) == me:
                    await sync_to_async(cache.delete)(LEASE_KEY)


def _take_lease(me: str) -> bool:
    try:
        return bool(cache.add(LEASE_KEY, me, LEASE_SECONDS))
    except Exception:  # Redis is away: nobody holds it for now; asked again in RENEW_SECONDS
        return False


def _renew(me: str) -> bool:
    """Whether `me` still holds the lease, renewed; a restarted Redis forgot it: taken again if nobody has."""
    if cache.get(LEASE_KEY) is None:
        cache.add(LEASE_KEY, me, LEASE_SECONDS)
    if cache.get(LEASE_KEY) != me:
        return False
    cache.touch(LEASE_KEY, LEASE_SECONDS)
    return True
