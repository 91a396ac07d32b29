"""The live hub: one channel-layer channel per process (and event loop), shared by all of its live sockets.

A socket does not hold a channel of its own: the hub joins each group once for the whole process, on behalf
of the sockets that follow it (counted, left when the last one goes), receives each message once and puts
it in the mailbox of every local socket following that group. One event is one layer message per process,
whatever the number of pages open in it. Messages say which group they were sent to (domains.live tags
them); a reply meant for one socket (live.replayed) comes to the hub's channel under that socket's own
return address.

Three things a socket is told through its mailbox, in order with everything else (consumers.py handles them):
    live.catching_up   the channel layer failed (Redis restarted): what the page shows may be going stale
    live.resync        fetch what the page shows again and replay what changed since its last applied
                       event: after the layer came back, or when the socket fell behind (its mailbox
                       overflowed, and what waited in it was dropped)
    live.recheck       every LIVE_RECHECK_SECONDS, to every socket at once: read the session and rights
                       again (domains.rechecks answers them together)
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import gc
import itertools
import logging
import weakref
from collections import deque
from collections.abc import Callable, Coroutine, Generator, Iterator
from typing import Any, NamedTuple

from channels.layers import get_channel_layer
from django.conf import settings

logger = logging.getLogger(__name__)

MAILBOX_CAPACITY = 500  # messages waiting for one socket before it counts as fallen behind
REJOIN_SECONDS = 3600.0  # group memberships expire in the layer (a day by default): renewed this often
RETRY_SECONDS = 0.5  # how often a failed layer is tried again
REPLY_PREFIX = "reply."  # a socket's own address in its hub, followed like a group the layer never sees

CATCHING_UP = {"type": "live.catching_up"}
RESYNC = {"type": "live.resync"}
RECHECK = {"type": "live.recheck"}

Deliver = Callable[[dict[str, Any]], Coroutine[Any, Any, None]]


class ReturnAddress(NamedTuple):
    """Where a reply to one socket goes: the hub's channel, and the socket's address within the hub."""

    channel: str
    group: str


class _Suspended:
    """A delivery begun at once (Mailbox.put) that has to wait: its socket's task finishes it, first."""

    def __init__(self, delivery: Coroutine[Any, Any, None], awaited: Any) -> None:
        self._delivery = delivery
        self._awaited = awaited  # what the delivery yielded: the future it waits for (asyncio's protocol)

    def __await__(self) -> Generator[Any, None, None]:
        """Drives the delivery on, as its task would have: what it waits for comes back as a result, or as
        the exception it ended with (or the task's cancellation), thrown into the delivery."""
        awaited = self._awaited
        while True:
            try:
                yield awaited
            except BaseException as error:  # noqa: BLE001 (handed to the delivery, which decides)
                step = functools.partial(self._delivery.throw, error)
            else:
                step = functools.partial(self._delivery.send, None)
            try:
                awaited = step()
            except StopIteration:
                return


class Mailbox:
    """One socket's messages from the hub, handled in order by one task of its own; bounded.

    A message that finds the task idle is handled at once by the hub's own call, until it has to wait:
    most deliveries never do (a row written straight to the socket, vmportal.frames), and a task switch
    per open page per event costs as much as the rest of the delivery.
    """

    def __init__(self, hub: LiveHub, address: str, deliver: Deliver, capacity: int) -> None:
        self.hub = hub
        self.address = address
        self.groups: set[str] = set()
        self._deliver = deliver
        self._capacity = capacity
        self._waiting: deque[dict[str, Any] | _Suspended] = deque()
        self._idle: asyncio.Future[None] | None = None  # what its task waits on while nothing waits for it
        self._delivering_now = False
        self._context = contextvars.copy_context()  # its task's, in which put() hands a message over too
        self._task: asyncio.Task[None] | None = None

    @property
    def return_address(self) -> ReturnAddress:
        return ReturnAddress(self.hub.channel, self.address)

    def put(self, message: dict[str, Any]) -> None:
        idle = self._idle
        if idle is not None and not idle.done() and not self._waiting and not self._delivering_now:
            self._deliver_now(message, idle)
            return
        if len(self._waiting) >= self._capacity:
            # Fallen behind: what waits is dropped, and the socket resyncs instead of silently missing it.
            logger.warning("a live socket fell %d messages behind; resyncing it", len(self._waiting))
            self._waiting.clear()
            self._waiting.append(RESYNC)
        self._waiting.append(message)
        if self._idle is not None and not self._idle.done():
            self._idle.set_result(None)

    def _deliver_now(self, message: dict[str, Any], idle: asyncio.Future[None]) -> None:
        delivery = self._deliver(message)
        self._delivering_now = True
        try:
            # In the task's own context, as if the task ran it: asgiref keeps per-context state across a
            # delivery's awaits (its single-thread executor's deadlock guard, for one).
            awaited = self._context.run(delivery.send, None)
        except StopIteration:
            return
        except Exception:  # as a failed delivery ends its task, it must not end the hub's
            logger.exception("delivering a live message failed")
            return
        finally:
            self._delivering_now = False
        self._waiting.append(_Suspended(delivery, awaited))
        idle.set_result(None)

    def start(self) -> None:
        """Handle what arrives from now on (the socket is accepted: until then, messages wait)."""
        if self._task is None:
            self._task = asyncio.create_task(self._handle_forever(), context=self._context)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self.hub.leave(self)

    async def _handle_forever(self) -> None:
        # A bare future rather than an asyncio.Event: this wakes once per event for every open page.
        loop = asyncio.get_running_loop()
        while True:
            while self._waiting:
                waiting = self._waiting.popleft()
                await (waiting if isinstance(waiting, _Suspended) else self._deliver(waiting))
            self._idle = loop.create_future()
            await self._idle


class LiveHub:
    """The live sockets' one channel in this process and event loop."""

    def __init__(self, layer: Any, *, mailbox_capacity: int = MAILBOX_CAPACITY,
                 rejoin_seconds: float = REJOIN_SECONDS, retry_seconds: float = RETRY_SECONDS) -> None:
        self.layer = layer
        self.channel = ""
        self.mailbox_capacity = mailbox_capacity
        self._rejoin_seconds = rejoin_seconds
        self._retry_seconds = retry_seconds
        self._followers: dict[str, set[Mailbox]] = {}  # layer group, or a mailbox's own address -> mailboxes
        # Joining and leaving the layer's groups, one at a time: a group left by its last socket while another
        # joins it is discarded before it is added again (the other order would leave it followed but not joined).
        self._membership = asyncio.Lock()
        self._mailboxes: set[Mailbox] = set()
        self._addresses = itertools.count()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self.channel = await self.layer.new_channel()  # room for a burst: settings.LIVE_CHANNEL_CAPACITY
        self._tasks = [asyncio.create_task(self._receive_forever()), asyncio.create_task(self._rejoin_forever()),
                       asyncio.create_task(self._recheck_forever())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks = []
        self._followers.clear()

    def mailbox(self, deliver: Deliver) -> Mailbox:
        """A new socket's mailbox, with its own return address; it follows groups through join()."""
        mailbox = Mailbox(self, f"{REPLY_PREFIX}{next(self._addresses)}", deliver, self.mailbox_capacity)
        self._mailboxes.add(mailbox)
        self._followers[mailbox.address] = {mailbox}
        return mailbox

    async def join(self, mailbox: Mailbox, group: str) -> None:
        """The mailbox receives the group's messages once this returns (the process joins it if it is the first)."""
        async with self._membership:
            followers = self._followers.get(group)
            if not followers:
                await self.layer.group_add(group, self.channel)
                followers = self._followers[group] = set()
            followers.add(mailbox)
            mailbox.groups.add(group)

    async def leave(self, mailbox: Mailbox) -> None:
        self._mailboxes.discard(mailbox)
        self._followers.pop(mailbox.address, None)
        for group in list(mailbox.groups):
            async with self._membership:
                mailbox.groups.discard(group)
                followers = self._followers.get(group, set())
                followers.discard(mailbox)
                if followers:
                    continue
                self._followers.pop(group, None)
                try:
                    await self.layer.group_discard(group, self.channel)
                except Exception:  # the layer is away: the membership expires with it, or is never renewed
                    logger.debug("leaving %s failed", group, exc_info=True)

    def _groups(self) -> list[str]:
        return [group for group in self._followers if not group.startswith(REPLY_PREFIX)]

    async def _receive_forever(self) -> None:
        while True:
            try:
                message = await self.layer.receive(self.channel)
            except Exception:
                logger.warning("the live hub lost the channel layer; catching up once it answers", exc_info=True)
                await self._catch_up()
                continue
            if "group" not in message:  # sent around domains.live.addressed(): no socket can be told
                logger.error("a live message without the group it was sent to: %s", message.get("type"))
                continue
            with _collections_deferred():
                for mailbox in list(self._followers.get(message["group"], ())):  # a delivery may leave
                    mailbox.put(message)

    async def _catch_up(self) -> None:
        """Every socket is told it is catching up; once the layer answers, the groups are joined again (a
        restarted Redis forgot them) and every socket resyncs."""
        for mailbox in list(self._mailboxes):
            mailbox.put(CATCHING_UP)
        while True:
            await asyncio.sleep(self._retry_seconds)
            try:
                await self._join_all()
                break
            except Exception:
                logger.debug("the channel layer still does not answer", exc_info=True)
        logger.warning("the live hub has the channel layer back; resyncing %d sockets", len(self._mailboxes))
        for mailbox in list(self._mailboxes):
            mailbox.put(RESYNC)

    async def _join_all(self) -> None:
        async with self._membership:
            for group in self._groups():
                await self.layer.group_add(group, self.channel)

    async def _rejoin_forever(self) -> None:
        while True:
            await asyncio.sleep(self._rejoin_seconds)
            try:
                await self._join_all()
            except Exception:  # the receiving task notices too, and catches up
                logger.warning("renewing the live hub's groups failed", exc_info=True)

    async def _recheck_forever(self) -> None:
        while True:
            await asyncio.sleep(float(settings.LIVE_RECHECK_SECONDS))
            for mailbox in list(self._mailboxes):
                mailbox.put(RECHECK)


@contextlib.contextmanager
def _collections_deferred() -> Iterator[None]:
    """No garbage collection while one message is handed to every socket: a full one holds the loop for as
    long as it walks the heap (150 ms and more at 1,000 open pages), and the sweep allocates enough to start
    one. Deferred, it runs once the pages have their update, between events."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[LiveHub, asyncio.Future[None]]] = \
    weakref.WeakKeyDictionary()


async def running_hub() -> LiveHub:
    """This process's hub on the running loop, started with its first socket (tests run a loop per test)."""
    loop = asyncio.get_running_loop()
    if loop not in _hubs:
        hub = LiveHub(get_channel_layer())
        _hubs[loop] = (hub, asyncio.ensure_future(hub.start()))
    hub, started = _hubs[loop]
    await asyncio.shield(started)
    return hub
