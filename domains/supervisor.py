"""The supervisor: one HostWatcher per enabled host, their events onto the channel layer (domains.live).

Background work with an owner: without REDIS_URL the web process's ASGI application (vmportal.lifespan)
starts this process's supervisor and stops it at shutdown; with REDIS_URL `manage.py watchhosts` runs
one. It replaces a watcher whose thread died, answers replay requests, and runs the settling of
migration jobs no runner follows (a service: services.migrations_settle_stale). Its watchers are the
list's source (domains.catalog): registered there in this process, and with a publisher (watchhosts)
written to the shared cache for the web processes, before their events go out. Its child, the sampling
process (domains.sampling), samples what the same hosts' VMs use every USAGE_INTERVAL_SECONDS; the supervisor
keeps what it sends (domains.usage, domains.history, pruned here), pushes each host's rates to its pages, and
starts another child when one dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from typing import Any

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from . import catalog, history, live, sampling, services, usage, virt
from .live import WATCHERS_GROUP, messages_for, record_to_wire
from .models import Host

logger = logging.getLogger(__name__)

HOST_REFRESH_SECONDS = 10.0  # how often the supervisor re-reads the host table
MIGRATION_SETTLE_SECONDS = 15.0  # how often it looks for jobs no runner follows
LAYER_RETRY_SECONDS = 0.5  # how soon the nudge listener tries a failed channel layer again
PRUNE_SECONDS = 600.0  # how often usage history older than it is kept is deleted
SAMPLING_RESTART_SECONDS = 1.0  # how soon a sampling process that died is replaced
SAMPLING_FINISH_SECONDS = 10.0  # how long a stopping sampling process has to send its hosts' last buckets


class Supervisor:
    """Runs a HostWatcher per enabled host and publishes what they see; lives on one asyncio loop."""

    def __init__(self, *, watcher_options: dict[str, Any] | None = None,
                 refresh_seconds: float = HOST_REFRESH_SECONDS,
                 settle_seconds: float = MIGRATION_SETTLE_SECONDS,
                 publisher: catalog.Publisher | None = None, usage_interval: float | None = None) -> None:
        self._watcher_options = watcher_options or {}
        self._usage_interval = settings.USAGE_INTERVAL_SECONDS if usage_interval is None else usage_interval
        self._sampling: sampling.SamplingProcess | None = None
        self._keeping: asyncio.Task[None] | None = None
        self._stopping = False
        self._publisher = publisher
        self._refresh_seconds = refresh_seconds
        self._settle_seconds = settle_seconds
        self._watchers: dict[int, tuple[Host, virt.HostWatcher]] = {}
        self._outbox: asyncio.Queue[tuple[Host, virt.HostEvent]] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._refreshing = asyncio.Lock()

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loop

    def watcher(self, host_id: int) -> virt.HostWatcher | None:
        entry = self._watchers.get(host_id)
        return entry[1] if entry else None

    async def start(self) -> None:
        """Start a watcher per enabled host, and the tasks that publish, take nudges, follow the hosts and
        settle migrations a restart left behind."""
        self._loop = asyncio.get_running_loop()
        await self._refresh_hosts()
        self._tasks = [asyncio.create_task(coroutine) for coroutine in
                       (self._publish_forever(), self._listen_for_nudges(), self._refresh_forever(),
                        self._settle_migrations_forever(), self._prune_forever())]
        if self._usage_interval > 0:
            self._keeping = asyncio.create_task(self._keep_usage_forever())

    async def run(self) -> None:
        """start(), then run until cancelled; the watchers stop with it."""
        await self.start()
        try:
            await asyncio.gather(*self._tasks)
        finally:
            await self.stop()

    async def stop(self) -> None:
        self._stopping = True
        if self._sampling is not None:
            self._sampling.finish()  # its last buckets come in and are kept before the task ends
        if self._keeping is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._keeping), SAMPLING_FINISH_SECONDS + 1)
            self._keeping.cancel()
        for task in self._tasks:
            task.cancel()
        await sync_to_async(self.stop_watchers, thread_sensitive=False)()

    def stop_watchers(self) -> None:
        """Their threads and libvirt connections; also once the loop is gone (at the process's exit)."""
        watchers = self._watchers
        self._watchers = {}
        for host_id in watchers:
            self._unlist(host_id)
        _stop_all(watcher for _host, watcher in watchers.values())

    def _unlist(self, host_id: int) -> None:
        """The host's records are no longer kept current from here (nor its usage sampled: _sample_hosts)."""
        catalog.watching(host_id, None)
        if self._publisher is not None:
            try:
                self._publisher.withdraw(host_id)
            except Exception:  # the cache is away: what was published expires by itself
                logger.warning("withdrawing the published records of host %s failed", host_id, exc_info=True)

    async def _refresh_hosts(self) -> None:
        async with self._refreshing:  # from the timer and from pages' requests: one at a time
            await self._refresh_hosts_now()

    async def _refresh_hosts_now(self) -> None:
        hosts = {host.pk: host for host in await sync_to_async(_enabled_hosts)()}
        for host, watcher in self._watchers.values():
            if not watcher.alive:
                logger.error("the watcher of %s died; starting another", host.name)
        stale = [pk for pk, (host, watcher) in self._watchers.items()
                 if pk not in hosts or hosts[pk].uri != host.uri or not watcher.alive]
        stopping = [self._watchers.pop(pk)[1] for pk in stale]
        for pk in stale:
            if pk not in hosts:
                await sync_to_async(self._unlist, thread_sensitive=False)(pk)
        if stopping:
            await sync_to_async(_stop_all, thread_sensitive=False)(stopping)
        for pk, host in hosts.items():
            if pk not in self._watchers:
                watcher = virt.HostWatcher(host.uri, self._sink(host), name=host.name, **self._watcher_options)
                self._watchers[pk] = (host, watcher)
                catalog.watching(pk, watcher)
                watcher.start()
            else:
                self._watchers[pk] = (host, self._watchers[pk][1])  # a renamed host keeps its watcher
        self._sample_hosts()
        if self._publisher is not None:
            await sync_to_async(self._publisher.keep, thread_sensitive=False)(list(self._watchers))

    def _sample_hosts(self) -> None:
        if self._sampling is not None:
            self._sampling.sample([(pk, host.name, host.uri)
                                   for pk, (host, _watcher) in sorted(self._watchers.items())])

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_seconds)
            try:
                await self._refresh_hosts()
            except Exception:
                logger.exception("re-reading the hosts to watch failed")

    async def _settle_migrations_forever(self) -> None:
        """A migration whose runner died with its process is followed again or settled here, from the
        start on; pages only show it as stale. Other processes may settle the same job: the service
        concludes it once."""
        while True:
            try:
                # Off the shared sync thread: asking an unreachable host may take the host deadline.
                await database_sync_to_async(services.migrations_settle_stale, thread_sensitive=False)()
            except Exception:
                logger.exception("settling migration jobs failed")
            await asyncio.sleep(self._settle_seconds)

    def _sink(self, host: Host) -> virt.Sink:
        loop = self._loop
        if loop is None:
            raise RuntimeError("the supervisor has not started")

        def hand_over(event: virt.HostEvent) -> None:  # on the watcher's thread
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody is listening any more
                loop.call_soon_threadsafe(self._outbox.put_nowait, (host, event))

        return hand_over

    async def _keep_usage_forever(self) -> None:
        """The sampling process's frames kept, each host's rates pushed; a child that dies is replaced."""
        while not self._stopping:
            started = time.monotonic()
            try:
                self._sampling = await sampling.SamplingProcess.start(interval=self._usage_interval)
            except OSError:
                logger.exception("starting the sampling process failed")
            else:
                self._sample_hosts()
                async for kept in self._sampling.kept():
                    await self._keep(kept)
                status = await self._sampling.wait(SAMPLING_FINISH_SECONDS)
                if self._stopping:
                    return
                logger.error("the sampling process %s exited (status %s); starting another", self._sampling.pid, status)
                self._sampling = None
            await asyncio.sleep(max(0.0, started + SAMPLING_RESTART_SECONDS - time.monotonic()))

    async def _keep(self, kept: usage.Kept) -> None:
        try:
            await database_sync_to_async(usage.keep, thread_sensitive=False)(kept)
        except Exception:
            logger.exception("keeping the usage of host %s failed", kept.host_id)
            return
        news = live.usage_news(kept.host_id, kept.latest) if kept.latest is not None else None
        if news is not None:
            group = live.usage_group(kept.host_id)
            try:
                await get_channel_layer().group_send(group, live.addressed(group, news))
            except Exception:
                logger.warning("pushing the usage of host %s failed", kept.host_id, exc_info=True)

    async def _prune_forever(self) -> None:
        while True:
            try:
                await database_sync_to_async(history.prune, thread_sensitive=False)(time.time())
            except Exception:
                logger.exception("pruning the usage history failed")
            await asyncio.sleep(PRUNE_SECONDS)

    async def _publish_forever(self) -> None:
        layer = get_channel_layer()
        while True:
            batch = [await self._outbox.get()]
            while not self._outbox.empty():  # what queued meanwhile goes out together
                batch.append(self._outbox.get_nowait())
            if self._publisher is not None:
                # The web processes' lists read the shared cache: it holds the change before the pages hear of it.
                await self._publish_records(self._publisher, {host.pk for host, _event in batch})
            for host, event in batch:
                current = self._watchers.get(host.pk)
                host = current[0] if current else host
                try:
                    for group, message in messages_for(host, event):
                        await layer.group_send(group, message)
                except Exception:
                    logger.exception("publishing %s of %s failed", type(event).__name__, host.name)

    async def _publish_records(self, publisher: catalog.Publisher, host_ids: set[int]) -> None:
        watched = {host_id: self._watchers[host_id][1].watched() for host_id in host_ids if host_id in self._watchers}

        def publish() -> None:
            for host_id, records in watched.items():
                publisher.publish(host_id, records)

        try:
            await sync_to_async(publish, thread_sensitive=False)()
        except Exception:  # the lists fall back to reading the hosts themselves
            logger.exception("publishing the records of hosts %s failed", sorted(host_ids))

    async def _listen_for_nudges(self) -> None:
        """Nudges (re-read a VM or a host) and replays (tell one page what changed since it was rendered).
        The group is joined again now and then (memberships expire), and after the layer failed (a restarted
        Redis forgot it)."""
        layer = get_channel_layer()
        channel = await layer.new_channel()
        while True:
            try:
                await layer.group_add(WATCHERS_GROUP, channel)
                message = await asyncio.wait_for(layer.receive(channel), timeout=3600)
            except TimeoutError:
                continue
            except Exception:
                logger.warning("listening for nudges failed; again in %s s", LAYER_RETRY_SECONDS, exc_info=True)
                await asyncio.sleep(LAYER_RETRY_SECONDS)
                continue
            try:
                if message.get("type") == "live.hosts":
                    await self._refresh_hosts()
                elif message.get("type") == "live.nudge":
                    watcher = self.watcher(int(message["host_id"]))
                    if watcher is not None:
                        watcher.nudge(message.get("uuid"))
                elif message.get("type") == "live.replay":
                    await self._replay(layer, message)
            except Exception:
                logger.exception("handling %s failed", message.get("type"))

    async def _replay(self, layer: Any, request: dict[str, Any]) -> None:
        uuid = request.get("uuid")
        if any(int(host_id) not in self._watchers for host_id in request["host_ids"]):
            # A host added since the last look (from another process, say): watch it now. Its first
            # listing goes to the host's group, which the asking page has joined.
            await self._refresh_hosts()
        for host_id in request["host_ids"]:
            entry = self._watchers.get(int(host_id))
            if entry is None:
                continue
            host, watcher = entry
            news = watcher.changes_since(int(request["since"]))
            changed = [[seq, record_to_wire(record)] for seq, record in news.changed if uuid in (None, record.uuid)]
            removed = [[seq, gone] for seq, gone in news.removed if uuid in (None, gone)]
            if changed or removed or news.lost:
                await layer.send(request["reply_to"], {  # to the asking socket, through its process's hub
                    "type": "live.replayed", "group": request["reply_group"], "host_id": host.pk,
                    "host_name": host.name, "changed": changed, "removed": removed,
                    "lost": list(news.lost) if news.lost else None})


def _enabled_hosts() -> list[Host]:
    return list(Host.objects.filter(enabled=True))


def _stop_all(watchers: Iterable[virt.HostWatcher]) -> None:
    for watcher in watchers:
        watcher.stop()


# --- This process's supervisor, started and stopped by the process's owner (vmportal.lifespan). ---

_running: Supervisor | None = None
_running_lock = asyncio.Lock()


def running_supervisor() -> Supervisor | None:
    return _running


def embedded_watchers_enabled() -> bool:
    """Without Redis there is no other process to run the watchers: the web process does."""
    return not settings.REDIS_URL


async def start_supervisor() -> Supervisor:
    """Start this process's supervisor on the running loop, once; later calls on that loop return it."""
    global _running_lock
    loop = asyncio.get_running_loop()
    if _running is not None and _running.loop is loop:
        return _running
    try:
        async with _running_lock:
            return await _start(loop)
    except RuntimeError:  # the lock belongs to a loop that is gone (tests run one loop per test)
        _running_lock = asyncio.Lock()
        async with _running_lock:
            return await _start(loop)


async def _start(loop: asyncio.AbstractEventLoop) -> Supervisor:
    global _running
    if _running is not None and _running.loop is loop:
        return _running
    if _running is not None:  # left over from a loop that closed
        await _running.stop()
    supervisor = Supervisor()
    await supervisor.start()
    _running = supervisor
    live.broadcast_on(loop)
    logger.info("live state: watching every enabled host from this process")
    return supervisor


async def stop_supervisor() -> None:
    global _running
    supervisor, _running = _running, None
    live.broadcast_on(None)
    if supervisor is not None:
        await supervisor.stop()


def stop_supervisor_at_exit() -> None:
    """At the process's exit, its event loop stopped: the watchers' threads and connections end cleanly."""
    global _running
    supervisor, _running = _running, None
    live.broadcast_on(None)
    if supervisor is not None:
        supervisor.stop_watchers()
