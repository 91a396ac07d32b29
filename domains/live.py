"""Live state: the watchers' events, through the channel layer, to every page that may see them.

    libvirt event ─ HostWatcher (domains.virt, its own thread per host)
        └─ Supervisor (one per watching process, on its asyncio loop): publishes plain records
             ├─ group host.<id>      → list pages (consumers.DomainListConsumer)
             └─ group domain.<uuid>  → VM pages  (consumers.DomainPageConsumer)
    each consumer filters per recipient through domains.access and the page's own query,
    and pushes the same row (or summary) partial the HTTP views render.

Who runs the Supervisor: without REDIS_URL, the web process's ASGI application (vmportal.asgi) starts it
on the server's own event loop and stops it at shutdown (the in-memory layer reaches only that process);
with REDIS_URL, `manage.py watchhosts` runs it, and any number of daphne processes only consume. It
replaces a watcher whose thread died.
Changes libvirt has no event for (autostart, snapshots made here) are nudged by the services
through the `live.watchers` group; grants and logouts are broadcast to the consumers.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from asgiref.sync import async_to_sync, sync_to_async
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth.signals import user_logged_out
from django.dispatch import receiver
from django.template.loader import render_to_string
from django.utils.safestring import mark_safe

from . import virt
from .access import Right
from .filters import ListQuery
from .models import Host
from .rows import DomainRow, row_element_id

if TYPE_CHECKING:
    from django.http import HttpRequest

logger = logging.getLogger(__name__)

WATCHERS_GROUP = "live.watchers"  # whoever runs the watchers: nudges
GRANTS_GROUP = "live.grants"  # every live consumer: grants changed, re-check what you may see
HOST_REFRESH_SECONDS = 10.0  # how often the supervisor re-reads the host table
MIGRATION_SETTLE_SECONDS = 15.0  # how often it looks for jobs no runner follows


def host_group(host_id: int) -> str:
    return f"host.{host_id}"


def domain_group(uuid: str) -> str:
    return f"domain.{uuid.lower()}"


def session_group(session_key: str) -> str:
    """The group of one login session's sockets; the key itself never leaves the session store."""
    return "session." + hashlib.sha256(session_key.encode()).hexdigest()[:48]


# --- Records on the wire: plain dicts the channel layer can carry (msgpack with Redis). ---


def record_to_wire(record: virt.DomainRecord) -> dict[str, Any]:
    return {
        "uuid": record.uuid, "name": record.name, "title": record.title, "state": int(record.state),
        "reason": record.reason, "persistent": record.persistent, "autostart": record.autostart,
        "managed_save": record.managed_save, "snapshots": record.snapshots, "vcpus": record.vcpus,
        "memory_kib": record.memory_kib, "id": record.id, "addresses": list(record.addresses),
    }


def record_from_wire(data: dict[str, Any]) -> virt.DomainRecord:
    return virt.DomainRecord(
        uuid=data["uuid"], name=data["name"], title=data["title"], state=virt.DomainState(data["state"]),
        reason=data["reason"], persistent=data["persistent"], autostart=data["autostart"],
        managed_save=data["managed_save"], snapshots=data["snapshots"], vcpus=data["vcpus"],
        memory_kib=data["memory_kib"], id=data["id"], addresses=tuple(data.get("addresses") or ()),
    )


# --- What a page shows: the same partials as the HTTP views. ---


@dataclass(frozen=True)
class LiveRow(DomainRow):
    """A row as pushed; `unreachable` when its host stopped answering (shown "unknown, last seen ...")."""

    unreachable: bool = False

    @property
    def actions(self) -> tuple[virt.Action, ...]:
        return () if self.unreachable else super().actions


@functools.lru_cache(maxsize=8192)
def render_partial(template: str, host_id: int, host_name: str, record: virt.DomainRecord,
                   rights: frozenset[Right], unreachable: bool, details_changed: bool = False) -> str:
    """A partial about one VM; shared by every recipient with the same rights on the same record.

    Rendered without a request: the partials' forms post through htmx, whose CSRF header <body> sets.
    """
    row = LiveRow(Host(pk=host_id, name=host_name), record, rights, unreachable=unreachable)
    return render_to_string(template, {"row": row, "details_changed": details_changed})


def row_html(host_id: int, host_name: str, record: virt.DomainRecord, rights: frozenset[Right],
             *, unreachable: bool = False) -> str:
    return render_partial("domains/list.html#row", host_id, host_name, record, rights, unreachable)


# --- What the live sockets send: out-of-band swaps of the pages' own partials (static/vmportal/live.js). ---


def row_message(host_id: int, host_name: str, record: virt.DomainRecord, rights: frozenset[Right],
                unreachable: bool) -> str:
    """The list's row, replaced or put in its sorted place: rendered once for every recipient with the
    same rights."""
    return render_partial("domains/list.html#pushed_row", host_id, host_name, record, rights, unreachable)


def removal_message(host_name: str, uuid: str) -> str:
    return render_to_string("domains/list.html#pushed_removal", {"dom_id": row_element_id(host_name, uuid)})


def host_message(host_id: int, host_name: str, *, message: str) -> str:
    """A host's banner on the list: shown with why it does not answer, or (no message) taken away."""
    return render_to_string("domains/list.html#pushed_host",
                            {"host": Host(pk=host_id, name=host_name), "message": message})


@functools.cache
def refresh_message() -> str:
    """The list fetches itself again (views without table rows, or what a new grant shows)."""
    return render_to_string("domains/list.html#pushed_refresh")


def summary_message(host_id: int, host_name: str, record: virt.DomainRecord, rights: frozenset[Right],
                    *, unreachable: bool = False, details_changed: bool = False) -> str:
    """The VM page's summary; `details_changed` has the page ask the guest agent again."""
    return render_partial("domains/detail.html#pushed_summary", host_id, host_name, record, rights, unreachable,
                          details_changed)


@functools.cache
def gone_message() -> str:
    """The VM page's VM is gone, or the user may no longer see it."""
    return render_to_string("domains/detail.html#pushed_gone")


def migration_message(progress_html: str) -> str:
    """A migration job's progress (rendered once by its runner, domains.migration_jobs), on the VM page or its own."""
    html = mark_safe(progress_html)  # noqa: S308 (the runner rendered it from domains/migrate_job.html#progress)
    return render_to_string("domains/migrate_job.html#pushed_progress", {"progress_html": html})


def in_view(query: ListQuery, host_name: str, record: virt.DomainRecord) -> bool:
    """Whether the list page with `query` shows the VM: virsh's options, the host and the text filter."""
    if query.host and query.host != host_name:
        return False
    return query.matches_text(record) and virt.record_matches(record, query.options)


# --- Broadcasts from services and signals (sync callers). ---


def _send(group: str, message: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, message)
    except Exception:  # a broadcast never fails the write that caused it
        logger.exception("live broadcast to %s failed", group)


def publish_from_thread(group: str, message: dict[str, Any]) -> None:
    """A broadcast from a thread of our own (a migration job's runner), without waiting for it.

    The in-memory layer's queues belong to the server's event loop: when this process's supervisor
    runs on it, the send is handed to that loop; otherwise (Redis, or no live socket yet) it is sent here.
    """
    supervisor = running_supervisor()
    loop = supervisor.loop if supervisor is not None else None
    layer = get_channel_layer()
    if layer is not None and loop is not None and loop.is_running():
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not loop:
            future = asyncio.run_coroutine_threadsafe(layer.group_send(group, message), loop)
            future.add_done_callback(_log_failure(group))
            return
    _send(group, message)


def _log_failure(group: str) -> Any:
    def check(future: Any) -> None:
        if not future.cancelled() and future.exception() is not None:
            logger.error("live broadcast to %s failed: %s", group, future.exception())

    return check


async def ask_replay(channel_name: str, host_ids: Iterable[int], since: int, uuid: str | None = None) -> None:
    """Ask whoever runs the watchers for what changed since a page was rendered, sent to its socket."""
    await get_channel_layer().group_send(WATCHERS_GROUP, {
        "type": "live.replay", "host_ids": list(host_ids), "since": since, "uuid": uuid, "reply_to": channel_name})


def rendered_at() -> int:
    """The time a page's data can be trusted from, in the watchers' sequence (microseconds): its own
    render time, less the longest a listing can take, as what changed meanwhile is replayed to it."""
    return time.time_ns() // 1000 - int((2 * settings.HOST_DEADLINE_SECONDS + 1) * 1_000_000)


def nudge(*, host_id: int, uuid: str | None = None) -> None:
    """Ask the watcher of a host to re-read one VM (or the whole host): for changes without an event."""
    _send(WATCHERS_GROUP, {"type": "live.nudge", "host_id": host_id, "uuid": uuid})


def grants_changed() -> None:
    _send(GRANTS_GROUP, {"type": "live.grants"})


@receiver(user_logged_out, dispatch_uid="domains.live.close_sockets_of_session")
def _close_sockets_of_session(sender: object, request: HttpRequest | None = None, **kwargs: object) -> None:
    session_key = request.session.session_key if request is not None else None
    if session_key:
        _send(session_group(session_key), {"type": "live.logout"})


# --- The supervisor: one watcher per enabled host, their events onto the channel layer. ---


class Supervisor:
    """Runs a HostWatcher per enabled host and publishes what they see; lives on one asyncio loop."""

    def __init__(self, *, watcher_options: dict[str, Any] | None = None,
                 refresh_seconds: float = HOST_REFRESH_SECONDS,
                 settle_seconds: float = MIGRATION_SETTLE_SECONDS) -> None:
        self._watcher_options = watcher_options or {}
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
                        self._settle_migrations_forever())]

    async def run(self) -> None:
        """start(), then run until cancelled; the watchers stop with it."""
        await self.start()
        try:
            await asyncio.gather(*self._tasks)
        finally:
            await self.stop()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await sync_to_async(self.stop_watchers, thread_sensitive=False)()

    def stop_watchers(self) -> None:
        """Their threads and libvirt connections; also once the loop is gone (at the process's exit)."""
        watchers = [watcher for _host, watcher in self._watchers.values()]
        self._watchers = {}
        _stop_all(watchers)

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
        if stopping:
            await sync_to_async(_stop_all, thread_sensitive=False)(stopping)
        for pk, host in hosts.items():
            if pk not in self._watchers:
                self._watchers[pk] = (host, virt.HostWatcher(
                    host.uri, self._sink(host), name=host.name, **self._watcher_options).start())
            else:
                self._watchers[pk] = (host, self._watchers[pk][1])  # a renamed host keeps its watcher

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
        from . import services  # services publish through this module

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

    async def _publish_forever(self) -> None:
        layer = get_channel_layer()
        while True:
            host, event = await self._outbox.get()
            current = self._watchers.get(host.pk)
            host = current[0] if current else host
            try:
                for group, message in messages_for(host, event):
                    await layer.group_send(group, message)
            except Exception:
                logger.exception("publishing %s of %s failed", type(event).__name__, host.name)

    async def _listen_for_nudges(self) -> None:
        """Nudges (re-read a VM or a host) and replays (tell one page what changed since it was rendered)."""
        layer = get_channel_layer()
        channel = await layer.new_channel()
        while True:
            await layer.group_add(WATCHERS_GROUP, channel)  # again now and then: memberships expire
            try:
                message = await asyncio.wait_for(layer.receive(channel), timeout=3600)
            except TimeoutError:
                continue
            try:
                if message.get("type") == "live.nudge":
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
                await layer.send(request["reply_to"], {
                    "type": "live.replayed", "host_id": host.pk, "host_name": host.name, "changed": changed,
                    "removed": removed, "lost": list(news.lost) if news.lost else None})


def _enabled_hosts() -> list[Host]:
    return list(Host.objects.filter(enabled=True))


def _stop_all(watchers: Iterable[virt.HostWatcher]) -> None:
    for watcher in watchers:
        watcher.stop()


def messages_for(host: Host, event: virt.HostEvent) -> list[tuple[str, dict[str, Any]]]:
    """The channel-layer messages that carry one watcher event, with the groups they go to."""
    base = {"host_id": host.pk, "host_name": host.name, "seq": event.seq}
    if isinstance(event, virt.DomainChanged):
        message = {"type": "live.domain", **base, "record": record_to_wire(event.record),
                   "details": event.details, "unreachable": False}
        return [(host_group(host.pk), message), (domain_group(event.record.uuid), message)]
    if isinstance(event, virt.DomainRemoved):
        message = {"type": "live.removed", **base, "uuid": event.uuid}
        return [(host_group(host.pk), message), (domain_group(event.uuid), message)]
    if isinstance(event, virt.HostLost):
        last_seen = [record_to_wire(record) for record in event.last_seen]
        return [
            (host_group(host.pk), {"type": "live.host", **base, "reachable": False, "message": event.message,
                                   "records": last_seen, "removed": []}),
            *((domain_group(record["uuid"]), {"type": "live.domain", **base, "record": record, "details": False,
                                              "unreachable": True}) for record in last_seen),
        ]
    records = [record_to_wire(record) for record in event.records]
    return [
        (host_group(host.pk), {"type": "live.host", **base, "reachable": True, "message": "",
                               "records": records, "removed": list(event.removed)}),
        *((domain_group(record["uuid"]), {"type": "live.domain", **base, "record": record, "details": False,
                                          "unreachable": False}) for record in records),
        *((domain_group(uuid), {"type": "live.removed", **base, "uuid": uuid}) for uuid in event.removed),
    ]


# --- This process's supervisor, started and stopped by the process's owner (vmportal.asgi). ---

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
    logger.info("live state: watching every enabled host from this process")
    return supervisor


async def stop_supervisor() -> None:
    global _running
    supervisor, _running = _running, None
    if supervisor is not None:
        await supervisor.stop()


def stop_supervisor_at_exit() -> None:
    """At the process's exit, its event loop stopped: the watchers' threads and connections end cleanly."""
    global _running
    supervisor, _running = _running, None
    if supervisor is not None:
        supervisor.stop_watchers()
