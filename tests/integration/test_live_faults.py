"""Live state when a real host fails: its libvirtd restarts under an open list page.

The page is an operator's list socket through the real ASGI stack, with the embedded watchers (the
default deployment). The restart is what `systemctl restart libvirtd` does on a host: SIGTERM, then
a new libvirtd in the same namespaces; the guests keep running meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

import lab
from accounts.models import User
from domains import supervisor
from domains.models import Host
from tests.integration.helpers import domain_state, domains, virsh
from tests.live_messages import read
from tests.support.live_sockets import signed_in_socket
from vmportal.asgi import application

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


async def receive(communicator: WebsocketCommunicator, timeout: float) -> dict[str, Any]:
    return read(await communicator.receive_from(timeout))


async def until(communicator: WebsocketCommunicator, timeout: float, check) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        message = await receive(communicator, max(0.05, deadline - time.monotonic()))
        if check(message):
            return message


async def test_a_libvirtd_restart_shows_the_host_unreachable_then_resyncs(
    lab_hosts: list[lab.LabHost], operator_user: User
) -> None:
    target = lab_hosts[-1]
    running = sorted(domains(target, active_only=True))
    assert running, f"{target.name} runs no guest to watch"
    watched = running[0]
    assert domain_state(target, watched) in ("running", "paused")
    last_state = domain_state(target, watched)
    host = await database_sync_to_async(Host.objects.create)(name=target.name, uri=target.uri)

    communicator = await signed_in_socket(operator_user, f"/ws/domains/?all&host={host.name}", application,
                                          timeout=10)
    try:
        first = await until(communicator, 15, lambda m: m["type"] == "host")
        assert first["reachable"] is True

        restarted_at = time.monotonic()
        await asyncio.to_thread(lab.restart_libvirtd, target.name)
        lost = await until(communicator, 10, lambda m: m["type"] == "host")
        assert lost["reachable"] is False
        assert lost["message"] == "The host cannot be reached right now."
        assert time.monotonic() - restarted_at < 10
        row = await until(communicator, 5, lambda m: m["type"] == "row" and f'data-name="{watched}"' in m["html"])
        assert 'data-state="unknown"' in row["html"]
        assert f"last seen {last_state}" in row["html"] and "shut off" not in row["html"]

        back = await until(communicator, 30, lambda m: m["type"] == "host")
        assert back["reachable"] is True
        row = await until(communicator, 5, lambda m: m["type"] == "row" and f'data-name="{watched}"' in m["html"])
        assert f'data-state="{last_state}"' in row["html"]

        # And it is live again: a change made with virsh on the restarted host arrives.
        action, state = ("suspend", "paused") if last_state == "running" else ("resume", "running")
        await asyncio.to_thread(virsh, target, action, watched)
        try:
            row = await until(communicator, 10,
                              lambda m: m["type"] == "row" and f'data-name="{watched}"' in m["html"]
                              and f'data-state="{state}"' in m["html"])
        finally:
            await asyncio.to_thread(virsh, target, "resume" if action == "suspend" else "suspend", watched)
    finally:
        await communicator.disconnect()
        await supervisor.stop_supervisor()
        assert lab.up(hosts=len(lab_hosts), demo_inventory=False)  # the lab still counts its host as running
