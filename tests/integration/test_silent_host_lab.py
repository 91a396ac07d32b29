"""A host that goes silent (its packets dropped, its connections left open) is found out by keepalive.

lab1 is reached through a relay socket this test owns; silencing the relay drops whatever either side
sends on the open connections without closing anything, as a host whose link went dead does. Without
keepalive a libvirt call on such a connection waits forever.
"""

from __future__ import annotations

import queue
import time

import pytest
from django.conf import settings

from domains import virt
from domains.virt import HostEvent, HostLost, HostSynced
from domains.virt.connections import connection
from tests.integration.conftest import Relay

pytestmark = pytest.mark.integration

# libvirt closes a connection after `count` unanswered pings sent `interval` seconds apart, the first
# after `interval` seconds of silence.
BOUND = settings.KEEPALIVE_INTERVAL * (settings.KEEPALIVE_COUNT + 1)
SLACK = 2.0  # the event loop's and the watcher's turn


def test_the_bound_is_at_most_eight_seconds():
    assert BOUND <= 8


def test_a_watcher_reports_a_silent_host_lost_within_the_bound_and_reconnects(relay: Relay):
    events: queue.Queue[HostEvent] = queue.Queue()
    watcher = virt.HostWatcher(relay.uri, events.put, name="lab1", resync_seconds=3600).start()
    try:
        assert isinstance(events.get(timeout=10), HostSynced)
        relay.silence()
        started = time.monotonic()
        while not isinstance(lost := events.get(timeout=BOUND + SLACK), HostLost):
            pass
        elapsed = time.monotonic() - started
        while not isinstance(events.get(timeout=10), HostSynced):  # back by itself, on a new connection
            pass
    finally:
        watcher.stop()
    assert elapsed <= BOUND + SLACK
    assert lost.last_seen  # its VMs as last seen, for the page to show "unknown"


def test_a_call_on_a_pooled_connection_to_a_silent_host_fails_within_the_bound(relay: Relay):
    """Without keepalive on the pooled connections this call never returned."""
    with connection(relay.uri) as conn:
        assert conn.getHostname() == "lab1"
    relay.silence()
    started = time.monotonic()
    with pytest.raises(virt.HostUnreachable) as caught, connection(relay.uri) as conn:
        conn.listAllDomains()
    assert time.monotonic() - started <= BOUND + SLACK
    assert caught.value.cause == "The host stopped answering: it missed its keepalive pings."
    with connection(relay.uri) as conn:  # the dead connection was dropped: a fresh one answers
        assert conn.getHostname() == "lab1"
