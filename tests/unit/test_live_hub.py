"""The live hub (domains.hub): one channel per process for all of its sockets, on the in-memory layer.

The first tests drive a hub alone with mailboxes that note what they are handed; the last ones open real
list and VM page sockets through the ASGI router (test_live_consumers's helpers) and make the process's hub
fall behind or lose its layer.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from accounts.models import User
from domains import live, virt
from domains.consumers import DomainListConsumer
from domains.hub import CATCHING_UP, RESYNC, LiveHub, Mailbox, running_hub
from domains.models import Host
from tests.conftest import TEST_DOMAIN_UUID
from tests.unit.test_live_consumers import SEQ, changed, connect, open_socket, publish, record
from vmportal.layers import InMemoryChannelLayer


class FailingLayer(InMemoryChannelLayer):
    """An in-memory layer that can go away as a Redis server does: every call fails, and when it comes
    back it has forgotten every group."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.group_adds = 0

    async def go_down(self, hub: LiveHub) -> None:
        self.down = True
        self.groups.clear()
        await super().send(hub.channel, WAKE)  # the hub's pending receive returns; its next one fails

    async def receive(self, channel: str) -> dict[str, Any]:
        if self.down:
            raise ConnectionError("the layer is away")
        return await super().receive(channel)

    async def group_add(self, group: str, channel: str) -> None:
        if self.down:
            raise ConnectionError("the layer is away")
        self.group_adds += 1
        await super().group_add(group, channel)


WAKE = {"type": "live.wake", "group": "nobody"}


class Noted:
    """A socket's side of a mailbox: notes what it is handed; can be made to stall."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.flowing = asyncio.Event()
        self.flowing.set()

    async def __call__(self, message: dict[str, Any]) -> None:
        await self.flowing.wait()
        self.messages.append(message)

    def types(self) -> list[str]:
        return [message["type"] for message in self.messages]


async def until(check: Any, timeout: float = 2) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not within the time"
        await asyncio.sleep(0.01)


@pytest.fixture
async def hub() -> AsyncIterator[LiveHub]:
    started = LiveHub(FailingLayer(), retry_seconds=0.05)
    await started.start()
    yield started
    await started.stop()


async def follower(hub: LiveHub, *groups: str) -> tuple[Mailbox, Noted]:
    noted = Noted()
    mailbox = hub.mailbox(noted)
    for group in groups:
        await hub.join(mailbox, group)
    mailbox.start()
    return mailbox, noted


async def test_one_message_per_process_reaches_every_socket_following_the_group(hub: LiveHub) -> None:
    followers = [await follower(hub, "host.1") for _ in range(200)]
    other = await follower(hub, "host.2")
    assert list(hub.layer.groups["host.1"]) == [hub.channel]  # the process joined once, for all 200
    await hub.layer.group_send("host.1", live.addressed("host.1", {"type": "live.domain", "seq": 7}))
    await until(lambda: all(noted.messages for _mailbox, noted in followers))
    assert {noted.messages[0]["seq"] for _mailbox, noted in followers} == {7}
    assert other[1].messages == []


async def test_a_socket_waiting_for_work_is_handed_its_message_in_the_hub_s_own_call(hub: LiveHub) -> None:
    mailbox, noted = await follower(hub)
    await asyncio.sleep(0)  # its task starts, and waits for work
    mailbox.put({"type": "live.domain", "seq": 1})
    assert noted.types() == ["live.domain"]  # handled before put() returned: no task switch per page


async def test_no_garbage_collection_runs_while_a_message_is_handed_to_every_socket(hub: LiveHub) -> None:
    collecting: list[bool] = []

    async def notes_the_collector(message: dict[str, Any]) -> None:
        collecting.append(gc.isenabled())

    for _socket in range(3):
        mailbox = hub.mailbox(notes_the_collector)
        await hub.join(mailbox, "host.1")
        mailbox.start()
    await asyncio.sleep(0)
    await hub.layer.group_send("host.1", live.addressed("host.1", {"type": "live.domain", "seq": 7}))
    await until(lambda: len(collecting) == 3)
    assert collecting == [False, False, False]
    assert gc.isenabled()  # deferred, not turned off


async def test_a_delivery_that_has_to_wait_is_finished_before_the_messages_after_it(hub: LiveHub) -> None:
    mailbox, noted = await follower(hub)
    await asyncio.sleep(0)
    noted.flowing.clear()
    for seq in (1, 2, 3):
        mailbox.put({"type": "live.domain", "seq": seq})
    assert noted.messages == []
    noted.flowing.set()
    await until(lambda: len(noted.messages) == 3)
    assert [message["seq"] for message in noted.messages] == [1, 2, 3]
    mailbox.put({"type": "live.domain", "seq": 4})  # idle again: at once
    assert [message["seq"] for message in noted.messages] == [1, 2, 3, 4]


async def test_a_delivery_handed_over_at_once_runs_in_its_socket_s_context(hub: LiveHub) -> None:
    """asgiref keeps state per context across a delivery's awaits: its single-thread executor's deadlock
    guard, set in the context that starts a call and cleared in the one that finishes it."""
    done: list[int] = []

    async def reads_the_database(message: dict[str, Any]) -> None:
        await sync_to_async(done.append)(message["seq"])  # thread-sensitive, as database_sync_to_async

    mailboxes = [hub.mailbox(reads_the_database) for _ in range(2)]
    for mailbox in mailboxes:
        mailbox.start()
    await asyncio.sleep(0)
    for seq in range(4):
        mailboxes[seq % 2].put({"type": "live.domain", "seq": seq})  # would deadlock-guard the second time
        await until(lambda handed=seq + 1: len(done) == handed)
    assert done == [0, 1, 2, 3]


async def test_what_a_waiting_delivery_waited_for_fails_with_reaches_the_delivery(hub: LiveHub) -> None:
    answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    caught: list[str] = []

    async def waits_for_an_answer(message: dict[str, Any]) -> None:
        try:
            await answer
        except ConnectionError as error:
            caught.append(str(error))

    mailbox = hub.mailbox(waits_for_an_answer)
    mailbox.start()
    await asyncio.sleep(0)
    mailbox.put({"type": "live.recheck"})  # begun at once, then it waits
    answer.set_exception(ConnectionError("the database is away"))
    await until(lambda: caught == ["the database is away"])


async def test_a_socket_closing_while_its_delivery_waits_ends_that_delivery(hub: LiveHub) -> None:
    mailbox, noted = await follower(hub)
    await asyncio.sleep(0)
    noted.flowing.clear()
    mailbox.put({"type": "live.domain", "seq": 1})
    await mailbox.close()
    noted.flowing.set()
    await asyncio.sleep(0.05)
    assert noted.messages == []


async def test_the_process_leaves_a_group_when_its_last_socket_does(hub: LiveHub) -> None:
    first, _noted = await follower(hub, "host.1", "live.grants")
    second, _noted = await follower(hub, "host.1")
    await first.close()
    assert hub.channel in hub.layer.groups["host.1"]
    assert hub.channel not in hub.layer.groups.get("live.grants", {})
    await second.close()
    assert hub.channel not in hub.layer.groups.get("host.1", {})


async def test_a_socket_joining_as_the_last_one_leaves_keeps_the_process_in_the_group(hub: LiveHub) -> None:
    """Redis answers each call on a connection of its own: a leave still under way must not undo a join."""
    leaving, _noted = await follower(hub, "host.1")
    discard = hub.layer.group_discard

    async def slow_discard(group: str, channel: str) -> None:
        await asyncio.sleep(0.1)
        await discard(group, channel)

    hub.layer.group_discard = slow_discard
    _left, (_joining, noted) = await asyncio.gather(leaving.close(), follower(hub, "host.1"))
    assert hub.channel in hub.layer.groups["host.1"]
    await hub.layer.group_send("host.1", live.addressed("host.1", {"type": "live.domain", "seq": 1}))
    await until(lambda: noted.messages)


async def test_a_reply_reaches_the_one_socket_it_is_addressed_to(hub: LiveHub) -> None:
    asking, asked = await follower(hub, "host.1")
    _other, other = await follower(hub, "host.1")
    reply_to = asking.return_address
    await hub.layer.send(reply_to.channel, {"type": "live.replayed", "group": reply_to.group})
    await until(lambda: asked.messages)
    await asyncio.sleep(0.05)
    assert asked.types() == ["live.replayed"] and other.messages == []


async def test_a_socket_that_falls_behind_is_resynced_not_left_stale(hub: LiveHub) -> None:
    hub.mailbox_capacity = 5
    _slow_mailbox, slow = await follower(hub, "host.1")
    _quick_mailbox, quick = await follower(hub, "host.1")
    slow.flowing.clear()  # its socket does not keep up
    for seq in range(20):
        await hub.layer.group_send("host.1", live.addressed("host.1", {"type": "live.domain", "seq": seq}))
    await until(lambda: len(quick.messages) == 20)
    slow.flowing.set()
    await until(lambda: slow.messages and slow.messages[-1].get("seq") == 19)
    assert "live.resync" in slow.types()  # told to fetch again what it dropped
    assert len(slow.messages) < 20
    assert [message["seq"] for message in quick.messages] == list(range(20))


async def test_a_layer_that_goes_away_has_every_socket_catch_up_then_resync(hub: LiveHub) -> None:
    followers = [await follower(hub, "host.1", f"domain.{n}") for n in range(3)]
    layer = hub.layer
    assert isinstance(layer, FailingLayer)
    await layer.go_down(hub)
    await until(lambda: all(noted.messages for _mailbox, noted in followers))
    assert all(noted.messages == [CATCHING_UP] for _mailbox, noted in followers)

    await asyncio.sleep(0.2)  # still away: nothing more to say
    layer.down = False  # back, and it remembers no group: the hub joins them all again
    await until(lambda: all(len(noted.messages) == 2 for _mailbox, noted in followers))
    assert all(noted.messages[1] == RESYNC for _mailbox, noted in followers)
    assert set(layer.groups) == {"host.1", "domain.0", "domain.1", "domain.2"}
    await layer.group_send("host.1", live.addressed("host.1", {"type": "live.domain", "seq": 1}))
    await until(lambda: all(len(noted.messages) == 3 for _mailbox, noted in followers))


# --- Through the real sockets: what the page is told. ---

@pytest.mark.django_db(transaction=True)
async def test_a_list_page_that_fell_behind_fetches_itself_again(
    admin_user: User, embedded_host: Host, sockets, monkeypatch: pytest.MonkeyPatch
) -> None:
    (await running_hub()).mailbox_capacity = 3
    admin = await connect(sockets, "/ws/domains/?all", admin_user)
    # A socket that cannot keep up: its first row waits until the whole burst reached the hub.
    caught_up = asyncio.Event()
    push = DomainListConsumer.push

    async def slow_push(consumer: DomainListConsumer, text: str) -> None:
        await caught_up.wait()
        await push(consumer, text)

    monkeypatch.setattr(DomainListConsumer, "push", slow_push)
    states = [virt.DomainState.PAUSED, virt.DomainState.RUNNING] * 5
    hub, layer = await running_hub(), get_channel_layer()
    for seq, state in enumerate(states):
        group, message = live.messages_for(embedded_host, changed(SEQ + seq, record(state=state)))[0]
        await layer.send(hub.channel, message)
    while (queue := layer.channels.get(hub.channel)) is not None and queue.qsize():  # the hub has them all
        await asyncio.sleep(0.01)
    caught_up.set()
    told = [await admin.receive()]
    while not await admin.silent():
        told.append(await admin.receive())
    assert told[-3:-1] == [{"type": "refresh"}, {"type": "indicator", "state": "on"}]
    assert 'data-state="running"' in told[-1]["html"]  # and the latest change, which came after
    assert len(told) < len(states)


@pytest.mark.django_db(transaction=True)
async def test_pages_say_they_are_catching_up_while_the_layer_is_away_then_resync(
    admin_user: User, embedded_host: Host, sockets, monkeypatch: pytest.MonkeyPatch
) -> None:
    listing = await connect(sockets, "/ws/domains/?all", admin_user)
    page = await connect(sockets, f"/ws/domains/embedded/{TEST_DOMAIN_UUID}/", admin_user)
    layer = get_channel_layer()
    away = asyncio.Event()
    receive = layer.receive

    async def receive_unless_away(channel: str) -> dict[str, Any]:
        if away.is_set():
            raise ConnectionError("the layer is away")
        return await receive(channel)

    async def group_add_unless_away(group: str, channel: str, add=layer.group_add) -> None:
        if away.is_set():
            raise ConnectionError("the layer is away")
        await add(group, channel)

    monkeypatch.setattr(layer, "receive", receive_unless_away)
    monkeypatch.setattr(layer, "group_add", group_add_unless_away)
    away.set()
    await layer.send((await running_hub()).channel, WAKE)  # its pending receive returns
    for socket in (listing, page):
        assert await socket.receive() == {"type": "indicator", "state": "catching-up"}
    layer.groups.clear()  # the restarted layer knows no group
    away.clear()
    assert [await listing.receive() for _ in range(2)] == [{"type": "refresh"}, {"type": "indicator", "state": "on"}]
    assert [await page.receive() for _ in range(2)] == [{"type": "refresh-summary"},
                                                        {"type": "indicator", "state": "on"}]
    await publish(embedded_host, changed(SEQ, record(state=virt.DomainState.PAUSED)))
    assert 'data-state="paused"' in (await listing.receive())["html"]  # live again: its groups joined anew
    assert 'data-state="paused"' in (await page.receive())["html"]



@pytest.mark.django_db(transaction=True)
async def test_a_socket_that_fails_to_open_follows_nothing(
    admin_user: User, embedded_host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def layer_away(*args: object, **kwargs: object) -> None:
        raise ConnectionError("the layer is away")

    monkeypatch.setattr(live, "ask_replay", layer_away)
    communicator, _connected, _code = await open_socket(f"/ws/domains/?all&since={SEQ}", admin_user)
    with contextlib.suppress(ConnectionError):
        await communicator.wait(1)
    hub, layer = await running_hub(), get_channel_layer()
    assert hub.channel not in layer.groups.get(live.host_group(embedded_host.pk), {})
    assert hub.channel not in layer.groups.get(live.GRANTS_GROUP, {})
