"""A connection that breaks under a pooled libvirt connection is an unreachable host, and is reopened.

The dashboard reaches lab1 through a relay socket this test owns; cutting the relay's streams breaks
the connection the way a host going away does, without touching the shared lab's daemons.
"""

from __future__ import annotations

import pytest

from domains import virt
from domains.virt.connections import connection
from tests.integration.conftest import Relay

pytestmark = pytest.mark.integration


def test_a_connection_broken_mid_use_is_host_unreachable_and_the_next_call_reconnects(relay: Relay):
    with connection(relay.uri) as conn:
        assert conn.getHostname() == "lab1"
    with pytest.raises(virt.HostUnreachable) as caught, connection(relay.uri) as conn:
        relay.cut()
        conn.listAllDomains()  # libvirt: "internal error: client socket is closed" (RPC), or "Cannot write data"
    assert caught.value.redacted_message == "The host cannot be reached right now."
    assert caught.value.full_message.startswith("The host cannot be reached right now. libvirt: ")

    with connection(relay.uri) as conn:  # the broken connection was dropped: a fresh one works
        assert conn.getHostname() == "lab1"
