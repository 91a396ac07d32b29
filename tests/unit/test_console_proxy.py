"""The console proxy's server in this process, against displays made here: each connection keeps what its
own ticket found, however the connections' steps interleave.

Each connection is held between its websocket upgrade (its ticket looked up and consumed, the request
checked) and its relay until the other connection has come as far: state kept anywhere but on the
connection (on the server, in a plugin the server shares) would then hand one user the other's display.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from accounts.models import User
from audit.models import AuditEntry
from consoles import services
from consoles.proxy import ConsoleProxyServer, ConsoleRequestHandler
from domains.models import Grant, Host
from tests.conftest import client_for
from tests.support.consoles import (
    PAGE_ORIGIN,
    ClientWebSocket,
    NamedDisplay,
    Stream,
    display_host_uri,
    echoes,
    greeting,
)

pytestmark = pytest.mark.django_db(transaction=True)  # the proxy's threads read what the test committed

VMS = {"vm-ann": "7e5d0000-0000-4000-8000-0000000000a1", "vm-bob": "7e5d0000-0000-4000-8000-0000000000b1"}


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: pytest.FixtureRequest) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # type: ignore[attr-defined]


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    displays = {name: NamedDisplay(name) for name in VMS}
    uri = display_host_uri(tmp_path / "displays.xml", {name: (uuid, displays[name].port) for name, uuid in VMS.items()})
    yield Host.objects.create(name="displays", uri=uri)
    for display in displays.values():
        display.listener.close()


@pytest.fixture
def sessions(host: Host) -> dict[str, str]:
    """ann may open vm-ann's console, bob vm-bob's: their session keys."""
    keys = {}
    for user, vm in (("ann", "vm-ann"), ("bob", "vm-bob")):
        account = User.objects.create_user(user, password="pw", role=User.Role.TENANT)
        Grant.objects.create(host=host, domain_uuid=VMS[vm], user=account, can_console=True)
        keys[user] = client_for(account).cookies["sessionid"].value
    return keys


@pytest.fixture
def proxy_port() -> Iterator[int]:
    server = ConsoleProxyServer(host="127.0.0.1", port=0, heartbeat=0)
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    yield server.server_address[1]
    server.shutdown()
    server.stop("test over", wait=5)


def ticket(user: str, vm: str) -> str:
    issued = services.console_tickets_issue(actor=User.objects.get(username=user), host_name="displays",
                                            uuid=VMS[vm], origin=PAGE_ORIGIN, client_addr="127.0.0.1")
    return issued.tokens[0]


def test_two_consoles_upgraded_at_once_each_reach_their_own_tickets_display(
    proxy_port: int, sessions: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    both_upgraded = threading.Barrier(2, timeout=10)
    log_message = ConsoleRequestHandler.log_message

    held: list[ConsoleRequestHandler] = []

    def log_then_wait(handler: ConsoleRequestHandler, format: str, *args: object) -> None:  # noqa: A002
        log_message(handler, format, *args)
        if "WebSocket connection" in format:  # websockify says so between the upgrade and the relay
            held.append(handler)
            both_upgraded.wait()

    monkeypatch.setattr(ConsoleRequestHandler, "log_message", log_then_wait)
    tokens = {"ann": ticket("ann", "vm-ann"), "bob": ticket("bob", "vm-bob")}

    def open_console(user: str) -> Stream:
        ws = ClientWebSocket({"Cookie": f"sessionid={sessions[user]}"})
        return Stream(ws.open(f"ws://127.0.0.1:{proxy_port}/websockify?token={tokens[user]}", origin=PAGE_ORIGIN))

    with ThreadPoolExecutor(2) as pool:
        ann, bob = pool.map(open_console, ("ann", "bob"))
    try:
        assert len(held) == 2, "the connections were not held together: nothing was tested"
        assert (greeting(ann), greeting(bob)) == ("vm-ann", "vm-bob")
        assert echoes(ann) and echoes(bob)
    finally:
        ann.ws.close()
        bob.ws.close()


def test_a_stopping_proxy_ends_its_consoles_and_audits_their_close(sessions: dict[str, str]) -> None:
    server = ConsoleProxyServer(host="127.0.0.1", port=0, heartbeat=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ws = ClientWebSocket({"Cookie": f"sessionid={sessions['ann']}"})
    stream = Stream(ws.open(f"ws://127.0.0.1:{server.server_address[1]}/websockify?token={ticket('ann', 'vm-ann')}",
                            origin=PAGE_ORIGIN))
    assert greeting(stream) == "vm-ann"
    server.shutdown()
    server.stop("proxy stopped", wait=5)
    with pytest.raises(ConnectionError, match="4001"):
        stream.chunk()
    closed = AuditEntry.objects.get(action="console.close", actor_name="ann")
    assert closed.message.startswith("proxy stopped")
