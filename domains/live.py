"""Live state: the watchers' events, through the channel layer, to every page that may see them.

    libvirt event ─ HostWatcher (domains.virt, its own thread per host)
        └─ Supervisor (domains.supervisor; one per watching process, on its asyncio loop): publishes records
             ├─ group host.<id>      → list pages (consumers.DomainListConsumer)
             └─ group domain.<uuid>  → VM pages  (consumers.DomainPageConsumer)
    each process's live hub (domains.hub) joins those groups once for all of its sockets and hands each
    message to the consumers following the group; each consumer filters per recipient through
    domains.access and the page's own query, and pushes the same row (or summary) partial the HTTP views
    render. Every message names the group it was sent to (addressed()): that is how the hub routes it.

Who runs the Supervisor: without REDIS_URL, the web process's ASGI application (vmportal.lifespan) starts
it on the server's own event loop and stops it at shutdown (the in-memory layer reaches only that process);
with REDIS_URL, `manage.py watchhosts` runs it, and any number of daphne processes only consume. It
replaces a watcher whose thread died.
Changes libvirt has no event for (autostart, snapshots made here) are nudged by the services
through the `live.watchers` group; grants and logouts are broadcast to the consumers.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth.signals import user_logged_out
from django.dispatch import receiver
from django.template.loader import render_to_string
from django.utils import translation
from django.utils.safestring import mark_safe

from . import history, virt
from .access import ALL_RIGHTS, Right
from .filters import ListQuery
from .hub import ReturnAddress
from .models import Host
from .rows import DomainRow, RowUsage, row_element_id

if TYPE_CHECKING:
    from django.http import HttpRequest

    from . import listing

logger = logging.getLogger(__name__)

WATCHERS_GROUP = "live.watchers"  # whoever runs the watchers: nudges
GRANTS_GROUP = "live.grants"  # every live consumer: grants changed, re-check what you may see


def host_group(host_id: int) -> str:
    return f"host.{host_id}"


def usage_group(host_id: int) -> str:
    """Each sample's rates of every VM of the host (domains.supervisor): one message per host and interval."""
    return f"usage.{host_id}"


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
        "address_source": record.address_source,
    }


_DECODED = "decoded"  # where a received record keeps its decoding


def record_from_wire(data: dict[str, Any]) -> virt.DomainRecord:
    """The record of a received message, decoded once for every socket it reaches (the hub hands them all
    the same message, which no one sends on)."""
    record: virt.DomainRecord | None = data.get(_DECODED)
    if record is None:
        record = data[_DECODED] = virt.DomainRecord(
            uuid=data["uuid"], name=data["name"], title=data["title"], state=virt.DomainState(data["state"]),
            reason=data["reason"], persistent=data["persistent"], autostart=data["autostart"],
            managed_save=data["managed_save"], snapshots=data["snapshots"], vcpus=data["vcpus"],
            memory_kib=data["memory_kib"], id=data["id"], addresses=tuple(data.get("addresses") or ()),
            address_source=data.get("address_source", ""),
        )
    return record


# --- What a page shows: the same partials as the HTTP views. ---


@dataclass(frozen=True)
class LiveRow(DomainRow):
    """A row as pushed; `unreachable` when its host stopped answering (shown "unknown, last seen ...")."""

    unreachable: bool = False
    usage: RowUsage | None = None  # its latest usage sample's figures, where one is known

    @property
    def actions(self) -> tuple[virt.Action, ...]:
        return () if self.unreachable else super().actions

    def as_json(self) -> dict[str, object]:
        usage = self.usage
        return super().as_json() | {"cpu_percent": usage.cpu_percent if usage else None,
                                    "memory_used_kib": usage.memory_used_kib if usage else None}


# Stands for the request's CSRF token in a row rendered once for every request (row_html's `for_page`).
FORM_TOKEN_MARKER = "form-token-of-the-request"  # noqa: S105 (a placeholder, not a secret)


@functools.lru_cache(maxsize=8192)
def render_partial(template: str, host_id: int, host_name: str, record: virt.DomainRecord,
                   rights: frozenset[Right], unreachable: bool, details_changed: bool = False,
                   for_page: bool = False, usage: RowUsage | None = None, *, language: str) -> str:
    """A partial about one VM; shared by every recipient with the same rights on the same record, in the same
    language (the caller's active one: a page's, or a live socket's, consumers._LiveConsumer.language).

    Rendered without a request: pushed partials' forms post through htmx, whose CSRF header <body> sets;
    a page's (`for_page`) carry FORM_TOKEN_MARKER where the request's token goes, for forms without script.
    """
    row = LiveRow(Host(pk=host_id, name=host_name), record, rights, unreachable=unreachable, usage=usage)
    context = {"row": row, "details_changed": details_changed}
    with translation.override(language):
        return render_to_string(template, {**context, "csrf_token": FORM_TOKEN_MARKER} if for_page else context)


def warm_up() -> None:
    """Compiles the pushed partials, and whatever their first render sets up (template tags, the URL
    resolver), before the first event: that first render costs about 70 ms, which every open page of the
    process would otherwise wait for."""
    record = virt.DomainRecord(uuid="00000000-0000-0000-0000-000000000000", name="warm-up", title="",
                               state=virt.DomainState.RUNNING, reason="", persistent=True, autostart=False,
                               managed_save=False, snapshots=0, vcpus=1, memory_kib=1024, id=1)
    for template in ("domains/list.html#pushed_row", "domains/detail.html#pushed_summary"):
        render_partial.__wrapped__(template, 0, "warm-up", record, ALL_RIGHTS, False, language=settings.LANGUAGE_CODE)


def row_html(host_id: int, host_name: str, record: virt.DomainRecord, rights: frozenset[Right],
             *, unreachable: bool = False, for_page: bool = False, usage: RowUsage | None = None) -> str:
    return render_partial("domains/list.html#row", host_id, host_name, record, rights, unreachable, False, for_page,
                          usage, language=translation.get_language())


# --- What the live sockets send: out-of-band swaps of the pages' own partials (static/vmportal/live.js). ---


def row_message(host_id: int, host_name: str, record: virt.DomainRecord, rights: frozenset[Right],
                unreachable: bool, usage: RowUsage | None = None) -> str:
    """The list's row, replaced or put in its sorted place: rendered once for every recipient with the
    same rights."""
    return render_partial("domains/list.html#pushed_row", host_id, host_name, record, rights, unreachable, False,
                          False, usage, language=translation.get_language())


def usage_cells_message(cells: Iterable[tuple[str, RowUsage]]) -> str:
    """A host's new sample for a page's rows: their CPU and memory cells, by row element id."""
    language = translation.get_language()
    rendered = "".join(_usage_cells(dom_id, usage, language) for dom_id, usage in cells)
    return f'<tr hx-swap-oob="cells:#results tbody">{rendered}</tr>'


@functools.lru_cache(maxsize=16384)
def _usage_cells(dom_id: str, usage: RowUsage, language: str) -> str:
    # Every page showing the VM in that language is sent the same cells: rendered once per sample and language.
    with translation.override(language):
        return render_to_string("domains/list.html#usage_cells", {"dom_id": dom_id, "usage": usage})


def order_message(page: listing.Page) -> str:
    """A page of a longer list, in order: the rows it holds now (each already pushed); others leave it."""
    return render_to_string("domains/list.html#pushed_order", {"dom_ids": [row.dom_id for row in page.rows]})


def footer_message(page: listing.Page, query: ListQuery) -> str:
    """The count and pager under a page of the list."""
    return render_to_string("domains/list.html#pushed_footer", {"page": page, "query": query})


def removal_message(host_name: str, uuid: str) -> str:
    return render_to_string("domains/list.html#pushed_removal", {"dom_id": row_element_id(host_name, uuid)})


def host_message(host_id: int, host_name: str, *, message: str) -> str:
    """A host's banner on the list: shown with why it does not answer, or (no message) taken away."""
    return render_to_string("domains/list.html#pushed_host",
                            {"host": Host(pk=host_id, name=host_name),
                             "message": virt.summary_for_reader(message) if message else ""})


@functools.cache
def refresh_message() -> str:
    """The list fetches itself again (views without table rows, or what a new grant shows)."""
    return render_to_string("domains/list.html#pushed_refresh")


def summary_message(host_id: int, host_name: str, record: virt.DomainRecord, rights: frozenset[Right],
                    *, unreachable: bool = False, details_changed: bool = False) -> str:
    """The VM page's summary; `details_changed` has the page ask the guest agent again."""
    return render_partial("domains/detail.html#pushed_summary", host_id, host_name, record, rights, unreachable,
                          details_changed, language=translation.get_language())


def usage_news(host_id: int, latest: dict[str, Any]) -> dict[str, Any] | None:
    """A host's sample for its pages (None before it gives rates): when it was taken, and each VM's rates over
    the interval before it, from models.HostUsage's fields (usage.latest_row)."""
    rates = {uuid: {name: value for name, value in figures.items() if name != "name"}
             for uuid, figures in latest["rates"].items() if uuid != history.HOST}
    return {"type": "live.usage", "host_id": host_id, "taken_at": latest["taken_at"], "rates": rates} if rates else None


def usage_sample_message(sample: dict[str, Any]) -> str:
    """A VM's latest usage for its page's charts: `t` (epoch seconds) and the figures of domains.history."""
    return render_to_string("domains/usage.html#pushed_sample", {"sample": json.dumps(sample)})


@functools.cache
def indicator_message(state: str) -> str:
    """The live indicator in the top bar: "catching-up" while the channel layer is away, "on" once resynced."""
    return render_to_string("domains/live.html#pushed_indicator", {"state": state})


@functools.cache
def summary_refresh_message() -> str:
    """The VM page fetches its summary again (a resync)."""
    return render_to_string("domains/detail.html#pushed_refresh")


@functools.cache
def gone_message() -> str:
    """The VM page's VM is gone, or the user may no longer see it."""
    return render_to_string("domains/detail.html#pushed_gone")


def revoked_message() -> str:
    """The VM page of a user who may no longer see the VM: a notice in place of the page, its controls gone."""
    return render_to_string("domains/detail.html#pushed_revoked")


def rights_changed_messages() -> list[str]:
    """The VM page of a user whose rights on the VM changed (the view right kept): a notice saying so, and its
    controls fetch themselves again."""
    return [render_to_string("domains/detail.html#pushed_rights_changed"),
            render_to_string("domains/detail.html#pushed_controls_refresh")]


def migration_message(progress_html: str) -> str:
    """A migration job's progress (rendered once by its runner, domains.migration_jobs), on the VM page or its own."""
    html = mark_safe(progress_html)  # noqa: S308 (the runner rendered it from domains/migrate_job.html#progress)
    return render_to_string("domains/migrate_job.html#pushed_progress", {"progress_html": html})


def in_view(query: ListQuery, host_name: str, record: virt.DomainRecord) -> bool:
    """Whether the list page with `query` shows the VM: virsh's options, the host and the text filter."""
    if query.host and query.host != host_name:
        return False
    return query.matches_text(record) and query.matches_options(record)


def addressed(group: str, message: dict[str, Any]) -> dict[str, Any]:
    """A message as sent to a group: it names the group, which the receiving process's hub routes by."""
    return {**message, "group": group}


# --- Broadcasts from services and signals (sync callers). ---


def _send(group: str, message: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, addressed(group, message))
    except Exception:  # a broadcast never fails the write that caused it
        logger.exception("live broadcast to %s failed", group)


_supervisor_loop: asyncio.AbstractEventLoop | None = None


def broadcast_on(loop: asyncio.AbstractEventLoop | None) -> None:
    """Told by this process's supervisor (domains.supervisor) which loop it runs on, None when it stops."""
    global _supervisor_loop
    _supervisor_loop = loop


def publish_from_thread(group: str, message: dict[str, Any]) -> None:
    """A broadcast from a thread of our own (a migration job's runner), without waiting for it.

    The in-memory layer's queues belong to the server's event loop: when this process's supervisor
    runs on it, the send is handed to that loop; otherwise (Redis, or no live socket yet) it is sent here.
    """
    loop = _supervisor_loop
    layer = get_channel_layer()
    if layer is not None and loop is not None and loop.is_running():
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not loop:
            future = asyncio.run_coroutine_threadsafe(layer.group_send(group, addressed(group, message)), loop)
            future.add_done_callback(_log_failure(group))
            return
    _send(group, message)


def _log_failure(group: str) -> Any:
    def check(future: Any) -> None:
        if not future.cancelled() and future.exception() is not None:
            logger.error("live broadcast to %s failed: %s", group, future.exception())

    return check


async def ask_replay(reply_to: ReturnAddress, host_ids: Iterable[int], since: int, uuid: str | None = None) -> None:
    """Ask whoever runs the watchers for what changed since a page was rendered (or last heard), sent to its
    socket (through its process's hub: the reply names the socket's address there as its group)."""
    await get_channel_layer().group_send(WATCHERS_GROUP, addressed(WATCHERS_GROUP, {
        "type": "live.replay", "host_ids": list(host_ids), "since": since, "uuid": uuid,
        "reply_to": reply_to.channel, "reply_group": reply_to.group}))


def rendered_at() -> int:
    """The time a page's data can be trusted from, in the watchers' sequence (microseconds): its own
    render time, less the longest a listing can take, as what changed meanwhile is replayed to it."""
    return time.time_ns() // 1000 - int((2 * settings.HOST_DEADLINE_SECONDS + 1) * 1_000_000)


def nudge(*, host_id: int, uuid: str | None = None) -> None:
    """Ask the watcher of a host to re-read one VM (or the whole host): for changes without an event."""
    _send(WATCHERS_GROUP, {"type": "live.nudge", "host_id": host_id, "uuid": uuid})


_watch_asked_at: dict[int, float] = {}  # host id: when this process last asked for it to be watched


def watch_hosts(host_ids: Iterable[int]) -> None:
    """Ask whoever runs the watchers to look at the host table now: a list met these hosts, which nobody
    watches. At most once a second per host from a process."""
    now = time.monotonic()
    asking = [host_id for host_id in host_ids if now - _watch_asked_at.get(host_id, -1.0) >= 1.0]
    if asking:
        _watch_asked_at.update(dict.fromkeys(asking, now))
        publish_from_thread(WATCHERS_GROUP, {"type": "live.hosts"})


def grants_changed() -> None:
    _send(GRANTS_GROUP, {"type": "live.grants"})


@receiver(user_logged_out, dispatch_uid="domains.live.close_sockets_of_session")
def _close_sockets_of_session(sender: object, request: HttpRequest | None = None, **kwargs: object) -> None:
    session_key = request.session.session_key if request is not None else None
    if session_key:
        _send(session_group(session_key), {"type": "live.logout"})


def messages_for(host: Host, event: virt.HostEvent) -> list[tuple[str, dict[str, Any]]]:
    """The channel-layer messages that carry one watcher event, with the groups they go to (and name)."""
    return [(group, addressed(group, message)) for group, message in _messages_for(host, event)]


def _messages_for(host: Host, event: virt.HostEvent) -> list[tuple[str, dict[str, Any]]]:
    base = {"host_id": host.pk, "host_name": host.name, "seq": event.seq}
    if isinstance(event, virt.DomainChanged):
        message = {"type": "live.domain", **base, "record": record_to_wire(event.record),
                   "previous": record_to_wire(event.previous) if event.previous is not None else None,
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
