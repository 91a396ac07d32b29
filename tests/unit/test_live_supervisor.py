"""The live supervisor: owned by the ASGI application (lifespan, or daphne's first connection), stopped at
shutdown, and it replaces a watcher whose thread died."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator

from accounts.models import User
from domains import live, virt
from domains.models import Host
from domains.supervisor import Supervisor, running_supervisor, stop_supervisor, stop_supervisor_at_exit
from tests.conftest import TEST_DOMAIN_UUID
from tests.live_messages import read
from tests.support.live_sockets import signed_in_socket
from vmportal import lifespan
from vmportal.asgi import router

pytestmark = pytest.mark.django_db(transaction=True)


def watching(host: Host) -> bool:
    """Whether a watcher thread of the host runs in this process."""
    return any(thread.name == f"watch-{host.name}" for thread in threading.enumerate())


async def eventually(check: Callable[[], bool], timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not within the time"
        await asyncio.sleep(0.05)


async def first_listing(application: Any, user: User) -> WebsocketCommunicator:
    """A list page's socket through `application`, once the watchers' rows reached it.

    Rendered long ago, the page learns every row the watchers hold, from their first listing or a replay.
    """
    communicator = await signed_in_socket(user, "/ws/domains/?all&since=1", application)
    while TEST_DOMAIN_UUID not in (read(await communicator.receive_from(5)).get("id") or ""):
        pass
    return communicator


async def test_a_server_with_lifespan_starts_the_watchers_at_startup_and_stops_them_at_shutdown(
    operator_user: User, embedded_host: Host
) -> None:
    application = lifespan.BackgroundWork(router)
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    server = asyncio.create_task(application({"type": "lifespan"}, inbox.get, outbox.put))
    await inbox.put({"type": "lifespan.startup"})
    assert (await asyncio.wait_for(outbox.get(), 5))["type"] == "lifespan.startup.complete"
    assert watching(embedded_host)
    page = await first_listing(application, operator_user)
    await page.disconnect()

    await inbox.put({"type": "lifespan.shutdown"})
    assert (await asyncio.wait_for(outbox.get(), 15))["type"] == "lifespan.shutdown.complete"
    await server
    assert not watching(embedded_host) and running_supervisor() is None


async def test_under_daphne_the_first_connection_starts_the_watchers_and_the_exit_stops_them(
    operator_user: User, embedded_host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    """daphne 4 opens no lifespan scope: the first connection starts the work, an atexit handler ends it."""
    at_exit: list[Callable[[], None]] = []
    monkeypatch.setattr(lifespan.atexit, "register", at_exit.append)
    application = lifespan.BackgroundWork(router)
    try:
        page = await first_listing(application, operator_user)  # the listing comes from the started watchers
        await page.disconnect()
        assert at_exit == [stop_supervisor_at_exit]
        await asyncio.to_thread(at_exit[0])  # the process exits: its loop has stopped
        assert not watching(embedded_host) and running_supervisor() is None
    finally:
        await stop_supervisor()


async def test_the_pushed_partials_are_compiled_off_the_loop_and_the_startup_heap_frozen_once(
    operator_user: User, embedded_host: Host, monkeypatch: pytest.MonkeyPatch, settings
) -> None:
    """The partials' first render costs about 70 ms, which every open page would wait for with the first
    event; the heap as it is then (the modules, Django, the templates) stays out of full collections."""
    settings.FREEZE_STARTUP_HEAP = True
    done: list[tuple[str, threading.Thread]] = []
    monkeypatch.setattr(lifespan.atexit, "register", lambda handler: None)
    monkeypatch.setattr(lifespan.live, "warm_up", lambda: done.append(("warm up", threading.current_thread())))
    monkeypatch.setattr(lifespan.gc, "freeze", lambda: done.append(("freeze", threading.current_thread())))
    application = lifespan.BackgroundWork(router)
    try:
        for _page in range(2):
            page = await first_listing(application, operator_user)
            await page.disconnect()
        assert [what for what, _thread in done] == ["warm up", "freeze"]
        assert done[0][1] is not threading.main_thread()
    finally:
        await stop_supervisor()


def test_warming_up_renders_the_pushed_partials_and_caches_no_row_of_its_own() -> None:
    cached = live.render_partial.cache_info().currsize
    live.warm_up()
    assert live.render_partial.cache_info().currsize == cached


async def test_a_watcher_whose_thread_dies_is_replaced(embedded_host: Host) -> None:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(live.host_group(embedded_host.pk), channel)
    supervisor = Supervisor(refresh_seconds=0.1)
    await supervisor.start()
    try:
        first = supervisor.watcher(embedded_host.pk)
        assert first is not None
        await eventually(lambda: first.reachable is True)

        def fail(_work: object) -> None:
            raise RuntimeError("a bug in the watcher's loop")

        first._handle = fail  # type: ignore[method-assign,assignment]
        first.nudge()
        await eventually(lambda: supervisor.watcher(embedded_host.pk) is not first)
        assert not first.alive
        replacement = supervisor.watcher(embedded_host.pk)
        assert replacement is not None and replacement.alive

        # The new watcher follows the host: a change made now reaches the pages' group.
        await database_sync_to_async(virt.run_action)("test:///default", TEST_DOMAIN_UUID, virt.Action.PAUSE)
        deadline = time.monotonic() + 5
        while True:
            message = await asyncio.wait_for(layer.receive(channel), max(0.05, deadline - time.monotonic()))
            if message["type"] == "live.domain" and message["record"]["state"] == virt.DomainState.PAUSED:
                break
    finally:
        await supervisor.stop()
