"""Live state websockets: subscribe, filter per user, push the same partials the pages render.

Consumers never call libvirt: records come from the watchers through the channel layer (see
domains.live). Every recipient is filtered through domains.access, like the views, and a VM
the user may not see is never mentioned, not even to remove it.

Messages to the browser: out-of-band swaps of the pages' own partials (domains.live's *_message, from
templates/domains/), which htmx's websocket extension applies (swap styles of static/vmportal/live.js):
    upsert:#results tbody      a list row (list.html#row), replaced or put in its sorted place
    discard:#results tbody     a row the list no longer shows
    order:#results tbody       a page of a longer list changed: its rows, in order (others leave it)
    #list-footer               that page's count and pager
    upsert/discard:#host-banners   a host's "does not answer" banner, shown or taken away
    refetch:#results           the list fetches itself again (views without table rows, a new grant, a resync)
    upsert:#summary            the VM page's summary (detail.html#summary), or its "no longer exists" notice
    upsert:#domain-page        the VM page of a user who may no longer see the VM: a notice, no controls; or
                               the notice that the user's rights on it changed (in its #rights-notice)
    refetch:#domain-controls   the VM page's controls fetch themselves again (the user's rights changed)
    refetch:#summary           the VM page fetches its summary again (a resync)
    cells:#results tbody       a host's new usage sample: the CPU and memory cells of the page's rows on it
    upsert:#migration-slot     a migration job's progress, to admins only: on the VM page, or on the job's
                               own page (whose socket asks with ?job=<id> for that job alone)
    usage:#usage               the VM's latest usage, for the VM page's charts (domains.usage)
    indicate:#live-indicator   "catching up" while this process's channel layer is away, "live" once resynced
Channel-layer messages reach a socket through its process's live hub (domains.hub), which joins the groups
for it: a socket has no channel of its own.
Close codes: 4403 not allowed (the handshake is refused); 4401 the session ended (logout, expiry,
password change, deactivation), after which live.js stops reconnecting; 1011 re-checks kept failing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.http import QueryDict
from django.utils import translation

from accounts.languages import socket_language
from vmportal import frames
from vmportal.frames import FrameWriter

from . import listing, live, metrics, virt
from .access import DomainKey, Right, domain_scope, is_admin, rights_from, visible_hosts
from .filters import ListQuery, ListQueryError, parse_list_query
from .hub import RESYNC, Mailbox, running_hub
from .models import Host
from .rechecks import running_rechecks
from .rows import RowUsage, row_element_id

if TYPE_CHECKING:
    from accounts.models import User

logger = logging.getLogger(__name__)

Granted = dict[DomainKey, frozenset[Right]] | None

REJECTED = 4403  # the close code for "not allowed"; the handshake is refused before it is accepted
SESSION_ENDED = 4401  # the close code for "your session ended": live.js stops reconnecting
RECHECK_FAILURES = 3  # re-checks failing in a row (the database is away) before the socket closes


class _LiveConsumer(AsyncJsonWebsocketConsumer):
    user: User
    granted: Granted
    ended = False  # its session ended (or could not be checked): closing, nothing more to re-check
    recheck_failures = 0  # re-checks failed in a row
    failed = False  # a handler failed: the socket closes, and its page reconnects and fetches itself again
    counted = False  # among the open websockets /metrics reports
    mailbox: Mailbox
    # No channel of its own (no layer alias names one): the process's hub receives for every socket.
    channel_layer_alias = "live sockets receive through domains.hub"

    # Channels closes stale database connections before every handler, a thread hop each time. These
    # handlers never touch the database (those that do go through database_sync_to_async, which
    # closes them itself), and they run once per open page for every event.
    DATABASE_FREE = frozenset({"live.domain", "live.removed", "live.host", "live.migration", "live.replayed",
                               "live.catching_up", "live.resync", "live.recheck", "live.grants", "live.logout",
                               "live.usage"})

    async def dispatch(self, message: dict[str, Any]) -> None:
        handler = getattr(self, get_handler_name(message), None) if message["type"] in self.DATABASE_FREE else None
        if handler is None:
            await super().dispatch(message)
        else:
            await handler(message)

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_active:
            await self.close(code=REJECTED)
            return
        session = self.scope.get("session")
        self.session_key: str = getattr(session, "session_key", None) or ""
        if not self.session_key:
            await self.close(code=REJECTED)
            return
        self.user = user
        self.language = socket_language(self.scope)
        # Once, not per message (an activation costs about 12 µs, per page and event): this socket's own task, and
        # its mailbox's task, whose context is copied from this one, render in its language; no other socket's.
        translation.activate(self.language)
        self.frames: FrameWriter | None = self.scope.get(frames.SCOPE_KEY)
        self.granted = await database_sync_to_async(domain_scope)(user)
        # The page's query, and `since`: when the page's data was read (live.rendered_at), added by live.js.
        self.params = QueryDict(self.scope.get("query_string", b"").decode(), mutable=True)
        since = self.params.pop("since", [""])[-1]
        self.since = int(since) if since.isdigit() else None
        self.seen: dict[DomainKey, int] = {}  # the highest sequence applied, per VM
        # The latest event applied per host, from which a resync replays; before any, the page's render.
        self.since_fallback = self.since if self.since is not None else live.rendered_at()
        self.applied: dict[int, int] = {}
        self.mailbox = (await running_hub()).mailbox(self._handle_live)
        try:
            if not await self.subscribe():
                await self.close(code=REJECTED)
                return
            await self._join(live.GRANTS_GROUP, live.session_group(self.session_key))
            await self.accept()
            metrics.websocket_opened()
            self.counted = True
            if self.frames is not None:
                self.frames.watch_backlog(lambda: self.mailbox.put(RESYNC))
            self.mailbox.start()
            if self.since is not None:  # what changed between the page's render and now, told to this socket only
                await self.ask_replay(self.since)
        except BaseException:  # the layer is away, say: a socket that failed to open follows nothing
            await self.mailbox.close()
            raise

    async def subscribe(self) -> bool:
        raise NotImplementedError

    async def ask_replay(self, since: int) -> None:
        raise NotImplementedError

    async def disconnect(self, code: int) -> None:
        if self.counted:
            metrics.websocket_closed()
            self.counted = False
        mailbox = getattr(self, "mailbox", None)
        if mailbox is not None:
            await mailbox.close()

    async def push(self, text: str) -> None:
        """A message to the page: straight onto daphne's socket when it can (vmportal.frames), else through ASGI;
        dropped while the page does not take what it is sent (it resyncs once it has taken it all)."""
        if self.frames is None or not self.frames.write(text):
            await self.send(text_data=text)

    async def _join(self, *groups: str) -> None:
        for group in groups:
            if group not in self.mailbox.groups:
                await self.mailbox.hub.join(self.mailbox, group)

    async def _handle_live(self, message: dict[str, Any]) -> None:
        """A message from the hub, in order; a failure closes the socket rather than leave its page stale."""
        if self.failed:
            return
        try:
            await self.dispatch(message)
        except Exception:
            self.failed = True
            logger.exception("a live socket failed handling %s; closing it", message.get("type"))
            await self.close(code=1011)
            return
        if "seq" in message:
            self.applied[message["host_id"]] = max(message["seq"], self.applied.get(message["host_id"], 0))

    async def live_catching_up(self, event: dict[str, Any]) -> None:
        await self.push(live.indicator_message("catching-up"))

    async def live_resync(self, event: dict[str, Any]) -> None:
        """After the layer came back, or after this socket fell behind: what it may have missed, again."""
        await self.resync(min((self.applied.get(host_id, self.since_fallback) for host_id in self.followed_hosts()),
                              default=self.since_fallback))
        await self.push(live.indicator_message("on"))

    def followed_hosts(self) -> Iterable[int]:
        raise NotImplementedError

    async def resync(self, since: int) -> None:
        try:
            await self.ask_replay(since)
        except Exception:  # a layer just back may fail a first call: the page fetched itself again anyway
            logger.warning("asking for a live socket's replay failed", exc_info=True)

    def _fresh(self, key: DomainKey, seq: int) -> bool:
        """Apply only what is newer than what this socket already showed (a resync may arrive late)."""
        if self.seen.get(key, -1) >= seq:
            return False
        self.seen[key] = seq
        return True

    async def live_recheck(self, event: dict[str, Any]) -> None:
        """The hub's turn, every LIVE_RECHECK_SECONDS: sessions expire, passwords change, users are deactivated
        or demoted (the admin site), and grants reach a user's groups, with no broadcast to say so."""
        await self.live_grants(event)

    async def live_grants(self, event: dict[str, Any]) -> None:
        """Grants changed (a broadcast), or the re-check's turn: the session and the rights, read again."""
        if self.ended:
            return
        try:
            standing = await running_rechecks().standing(self.session_key)
        except Exception:
            self.recheck_failures += 1  # the reason is logged once for every socket (domains.rechecks)
            if self.recheck_failures >= RECHECK_FAILURES:  # fail closed; live.js reconnects, and is checked anew
                self.ended = True
                await self.close(code=1011)
            return
        self.recheck_failures = 0
        if standing.user is None or standing.user.pk != self.user.pk:
            self.ended = True
            await self.close(code=SESSION_ENDED)
            return
        self.user = standing.user  # with its role as it is now
        before, self.granted = self.granted, standing.granted
        await self.rights_changed(before)

    async def rights_changed(self, before: Granted) -> None:
        """What the page shows, after the rights were read again (`before`: as they were)."""
        raise NotImplementedError

    async def live_logout(self, event: dict[str, Any]) -> None:
        self.ended = True
        await self.close(code=SESSION_ENDED)


class DomainListConsumer(_LiveConsumer):
    """The list page: ws/domains/?<the page's own query string>.

    It keeps the page it follows (domains.listing). A list that fits on its page follows the events alone:
    rows come and go and the page sorts them. A page of a longer list is also moved by rows of other pages
    entering, leaving or moving: an event that may do so has the page read again from the watchers' records
    (one filter and sort per change, shared by every page with the same list) and told the difference.
    """

    query: ListQuery

    async def subscribe(self) -> bool:
        try:
            self.query = parse_list_query(self.params)
        except ListQueryError:
            return False
        self.hosts: dict[int, str] = {}
        self.shown: dict[DomainKey, bool] = {}  # what this socket last told the page: shown or not
        self.usage: dict[DomainKey, RowUsage] = {}  # the latest usage of the rows the page shows
        await self._follow_hosts()
        self.page = await self._read_page()
        self.shown.update(dict.fromkeys(self.page.keys, True))
        self._keep_usage(self.page)
        return True

    async def _follow_hosts(self) -> None:
        self.visible = await database_sync_to_async(_hosts_in_view)(self.granted, self.query)
        self.hosts.update((host.pk, host.name) for host in self.visible)
        await self._join(*(group for host in self.visible
                           for group in (live.host_group(host.pk), live.usage_group(host.pk))))

    def _keep_usage(self, page: listing.Page) -> None:
        self.usage = {(row.host.pk, row.uuid): row.usage for row in page.rows if row.usage is not None}

    async def _read_page(self) -> listing.Page:
        # Off the shared sync thread: a host nobody watches yet is read, within the host deadline.
        found = await database_sync_to_async(listing.list_for, thread_sensitive=False)(
            self.granted, self.query, hosts=self.visible)
        return found.page

    @property
    def paged(self) -> bool:
        """Whether the list is longer than the page: other pages' rows can move this one."""
        return self.page.pages > 1

    async def live_domain(self, event: dict[str, Any]) -> None:
        previous = event.get("previous")
        await self._show(event["host_id"], live.record_from_wire(event["record"]), event["seq"],
                         unreachable=event["unreachable"],
                         previous=live.record_from_wire(previous) if previous else None)

    async def live_removed(self, event: dict[str, Any]) -> None:
        key = (event["host_id"], event["uuid"])
        if event["host_id"] in self.hosts and self._fresh(key, event["seq"]) and rights_from(self.granted, key):
            await self._hide(key)

    async def live_usage(self, event: dict[str, Any]) -> None:
        """A host's new sample: a list in usage order is read again; another gets its rows' cells."""
        host_id = event["host_id"]
        host_name = self.hosts.get(host_id)
        if host_name is None or not self.query.table:
            return
        if self.query.sorted_by_usage:
            await self._move_page()
            return
        rates = event["rates"]
        cells = []
        for key, shown in self.shown.items():
            usage = RowUsage.of(rates.get(key[1])) if shown and key[0] == host_id else None
            if usage is not None and rights_from(self.granted, key):
                self.usage[key] = usage
                cells.append((row_element_id(host_name, key[1]), usage))
        if cells:
            await self.push(live.usage_cells_message(cells))

    async def ask_replay(self, since: int) -> None:
        await live.ask_replay(self.mailbox.return_address, self.hosts, since)

    def followed_hosts(self) -> Iterable[int]:
        return self.hosts

    async def resync(self, since: int) -> None:
        await self.push(live.refresh_message())  # rows it may have missed: the page fetches itself again
        await super().resync(since)

    async def live_replayed(self, event: dict[str, Any]) -> None:
        host_id = event["host_id"]
        if host_id not in self.hosts:
            return
        if event["lost"]:
            await self.push(live.host_message(host_id, event["host_name"], message=event["lost"][1]))
        for seq, data in event["changed"]:
            await self._show(host_id, live.record_from_wire(data), seq, unreachable=bool(event["lost"]))
        for seq, uuid in event["removed"]:
            await self.live_removed({"host_id": host_id, "uuid": uuid, "seq": seq})

    async def live_host(self, event: dict[str, Any]) -> None:
        host_id = event["host_id"]
        if host_id not in self.hosts:
            return
        self.hosts[host_id] = event["host_name"]
        await self.push(live.host_message(host_id, event["host_name"],
                                                    message="" if event["reachable"] else event["message"]))
        if self.paged and self.query.table:
            await self._move_page()
            return
        for data in event["records"]:
            await self._show(host_id, live.record_from_wire(data), event["seq"], unreachable=not event["reachable"])
        for uuid in event["removed"]:
            key = (host_id, uuid)
            if self._fresh(key, event["seq"]) and rights_from(self.granted, key):
                await self._hide(key)

    async def rights_changed(self, before: Granted) -> None:
        if before == self.granted:
            return
        # What it may no longer see leaves the page: a revoked grant, or a role demoted from every VM (whose
        # page may show rows this socket never pushed: the refresh below re-fetches the list in its new scope).
        for key in ({key for key, shown in self.shown.items() if shown} if before is None else set(before)):
            if not rights_from(self.granted, key):
                await self._hide(key)
        if before is None or self.granted is None or set(self.granted) - set(before):
            # Newly visible VMs (or a new role): their records are with the watcher, the list with the page.
            await self._follow_hosts()
            await self.push(live.refresh_message())

    async def _show(self, host_id: int, record: virt.DomainRecord, seq: int, *, unreachable: bool,
                    previous: virt.DomainRecord | None = None) -> None:
        host_name = self.hosts.get(host_id)
        key = (host_id, record.uuid)
        if host_name is None or not self._fresh(key, seq):
            return
        rights = rights_from(self.granted, key)
        if not rights:
            return
        if self.paged and self.query.table:
            await self._show_on_page(key, host_name, record, rights, unreachable, previous)
            return
        if not live.in_view(self.query, host_name, record):
            await self._hide(key)
            return
        if not self.query.table:  # the name/UUID lists have no row partial: the page re-fetches itself
            self.shown[key] = True
            await self.push(live.refresh_message())
            return
        entered = not self.shown.get(key)
        self.shown[key] = True
        await self.push(live.row_message(host_id, host_name, record, rights, unreachable, self.usage.get(key)))
        if entered and sum(self.shown.values()) > self.page.per_page:
            await self._move_page()  # the list outgrew its page: the last row goes to the next one

    async def _show_on_page(self, key: DomainKey, host_name: str, record: virt.DomainRecord,
                            rights: frozenset[Right], unreachable: bool, previous: virt.DomainRecord | None) -> None:
        """A page of a longer list: the row changes in place, unless the change may move rows across pages."""
        shown = next((row for row in self.page.rows if (row.host.pk, row.uuid) == key), None)
        in_view = live.in_view(self.query, host_name, record)
        if shown is not None:
            stays = in_view and self.query.sort_key(host_name, shown.record) == self.query.sort_key(host_name, record)
        elif previous is None:  # new to the watcher, or a listing after a reconnect: where it was is unknown
            stays = not in_view
        else:
            stays = live.in_view(self.query, host_name, previous) == in_view and (
                not in_view or self.query.sort_key(host_name, previous) == self.query.sort_key(host_name, record))
        if not stays:
            await self._move_page()
        elif shown is not None:
            await self.push(live.row_message(key[0], host_name, record, rights, unreachable, self.usage.get(key)))

    async def _move_page(self) -> None:
        """Read the page again and tell the difference: rows that entered or changed, the order, the count."""
        before, self.page = self.page, await self._read_page()
        shown_before = {(row.host.pk, row.uuid): row for row in before.rows}
        for row in self.page.rows:
            key = (row.host.pk, row.uuid)
            if shown_before.get(key) != row:
                await self.push(live.row_message(row.host.pk, row.host.name, row.record, row.rights,
                                                 row.unreachable, row.usage))
        self.shown = dict.fromkeys(shown_before, False) | dict.fromkeys(self.page.keys, True)
        self._keep_usage(self.page)
        await self.push(live.order_message(self.page))
        if (before.count, before.number, before.pages) != (self.page.count, self.page.number, self.page.pages):
            await self.push(live.footer_message(self.page, self.query))

    async def _hide(self, key: DomainKey) -> None:
        host_name = self.hosts.get(key[0])
        if host_name is None or self.shown.get(key) is False:
            return
        if self.paged and self.query.table:
            await self._move_page()  # a row of the page leaves: the next page's first takes its place
            return
        self.shown[key] = False
        await self.push(live.removal_message(host_name, key[1]) if self.query.table
                        else live.refresh_message())


class DomainPageConsumer(_LiveConsumer):
    """The VM page: ws/domains/<host>/<uuid>/; rejected exactly when the page itself would be a 404."""

    async def subscribe(self) -> bool:
        kwargs = self.scope["url_route"]["kwargs"]
        self.uuid = str(kwargs["uuid"]).lower()
        self.job: str | None = self.params.get("job")  # a migration job's page: its progress, nothing else
        host = await database_sync_to_async(_enabled_host)(kwargs["host_name"])
        if host is None:
            return False
        self.host_id, self.host_name = host.pk, host.name
        self.key: DomainKey = (host.pk, self.uuid)
        self.last: tuple[virt.DomainRecord, bool] | None = None
        if Right.VIEW not in rights_from(self.granted, self.key):
            return False
        await self._join(live.domain_group(self.uuid), *(() if self.job else (live.usage_group(host.pk),)))
        return True

    async def ask_replay(self, since: int) -> None:
        await live.ask_replay(self.mailbox.return_address, [self.host_id], since, uuid=self.uuid)

    def followed_hosts(self) -> Iterable[int]:
        return (self.host_id,)

    async def resync(self, since: int) -> None:
        if self.job is None:
            await self.push(live.summary_refresh_message())
        await super().resync(since)

    async def live_replayed(self, event: dict[str, Any]) -> None:
        for seq, data in event["changed"]:
            await self.live_domain({"host_id": event["host_id"], "seq": seq, "record": data, "details": False,
                                    "unreachable": bool(event["lost"])})
        for seq, _uuid in event["removed"]:
            await self.live_removed({"host_id": event["host_id"], "seq": seq})

    async def live_domain(self, event: dict[str, Any]) -> None:
        if event["host_id"] != self.host_id or not self._fresh(self.key, event["seq"]):
            return
        self.last = (live.record_from_wire(event["record"]), event["unreachable"])
        await self._push_summary(details=event["details"])

    async def live_removed(self, event: dict[str, Any]) -> None:
        if event["host_id"] == self.host_id and self._fresh(self.key, event["seq"]):
            await self._gone()

    async def live_usage(self, event: dict[str, Any]) -> None:
        """The host's sample: this VM's rates, for the charts (the socket's VIEW right is re-checked as ever)."""
        rates = event["rates"].get(self.uuid)
        if event["host_id"] == self.host_id and rates is not None and Right.VIEW in rights_from(self.granted, self.key):
            await self.push(live.usage_sample_message({"t": event["taken_at"], **rates}))

    async def live_migration(self, event: dict[str, Any]) -> None:
        """A migration job's progress (domains.migration_jobs): admins run migrations, and only they see them."""
        if not is_admin(self.user) or self.job not in (None, str(event["job_id"])):
            return
        await self.push(live.migration_message(event["html"]))

    async def rights_changed(self, before: Granted) -> None:
        if Right.VIEW not in rights_from(self.granted, self.key):
            if self.job is None:
                await self.push(live.revoked_message())
            await self.close()
        elif rights_from(before, self.key) != rights_from(self.granted, self.key) and self.job is None:
            # The summary's actions, and the snapshot, hardware and delete controls, as the rights now allow.
            if self.last is not None:
                await self._push_summary(details=False)
            else:  # no event since the page was read: it fetches its summary itself
                await self.push(live.summary_refresh_message())
            for message in live.rights_changed_messages():
                await self.push(message)

    async def _push_summary(self, *, details: bool) -> None:
        if self.last is None or self.job is not None:
            return
        record, unreachable = self.last
        await self.push(live.summary_message(self.host_id, self.host_name, record,
                                                       rights_from(self.granted, self.key), unreachable=unreachable,
                                                       details_changed=details))

    async def _gone(self) -> None:
        if self.job is None:
            await self.push(live.gone_message())


def _hosts_in_view(granted: Granted, query: ListQuery) -> list[Host]:
    """The hosts whose VMs the list may show this user: access.visible_hosts, as selectors.domain_list."""
    return list(visible_hosts(granted, name=query.host))


def _enabled_host(name: str) -> Host | None:
    return Host.objects.filter(enabled=True, name=name).first()
