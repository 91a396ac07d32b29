"""The serial console: its link, page and tickets, and its websocket (consoles.consumers) on test hosts.

libvirt's test driver has no console streams (virDomainOpenConsole is "not supported"), so the relay is
tested here with a stand-in line in place of `virt.open_serial`, and against the lab's real guests in
tests/integration/test_serial_console.py; one test below opens the real stream to see the refusal.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client
from websockify.auth_plugins import AuthenticationError

from accounts.models import User
from audit.models import AuditEntry
from consoles.models import ConsoleTicket
from consoles.proxy import ConsoleTokenPlugin
from domains import virt
from domains.models import Grant, Host
from tests.conftest import client_for
from vmportal.asgi import router

pytestmark = pytest.mark.django_db(transaction=True)

SERIAL_UUID = "5e41a100-0000-4000-8000-000000000001"
BARE_UUID = "5e41a100-0000-4000-8000-000000000002"
VNC_UUID = "5e41a100-0000-4000-8000-000000000003"
PAGE = "localhost"  # the console page's host: its origin is http://localhost
ORIGIN = (b"origin", b"http://localhost")
HOST = (b"host", b"localhost")


def _domain(name: str, uuid: str, devices: str) -> str:
    return (f"<domain type='test'><name>{name}</name><uuid>{uuid}</uuid><memory>65536</memory><vcpu>1</vcpu>"
            f"<os><type>hvm</type></os><devices>{devices}</devices></domain>")


@pytest.fixture(autouse=True)
def fast_passwords(settings: pytest.FixtureRequest) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # type: ignore[attr-defined]


@pytest.fixture
def serial_host(db: None, tmp_path: Path) -> Host:
    path = tmp_path / "serial.xml"
    path.write_text("<node>" + _domain("vm-serial", SERIAL_UUID, "<serial type='pty'><target port='0'/></serial>")
                    + _domain("vm-bare", BARE_UUID, "")
                    + _domain("vm-vnc", VNC_UUID, "<graphics type='vnc' port='5911' autoport='no'>"
                              "<listen type='address' address='127.0.0.1'/></graphics>") + "</node>")
    return Host.objects.create(name="serial", uri=f"test://{path}")


@pytest.fixture
def tenant(serial_host: Host, tenant_user: User) -> User:
    """May open the consoles of all three machines."""
    for uuid in (SERIAL_UUID, BARE_UUID, VNC_UUID):
        Grant.objects.create(host=serial_host, domain_uuid=uuid, user=tenant_user, can_console=True)
    return tenant_user


def issue(client: Client, uuid: str = SERIAL_UUID) -> str:
    response = client.post(f"/consoles/serial/{uuid}/serial/tickets/", HTTP_HOST=PAGE)
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["kind"], body["url"], len(body["tickets"])) == ("serial", "/ws/consoles/serial/", 1)
    return str(body["tickets"][0])


def test_the_vm_page_links_the_serial_console_of_machines_with_a_serial_port(tenant: User) -> None:
    client = client_for(tenant)
    serial = client.get(f"/domains/serial/{SERIAL_UUID}/").content.decode()
    assert f'href="/consoles/serial/{SERIAL_UUID}/serial/"' in serial
    bare = client.get(f"/domains/serial/{BARE_UUID}/").content.decode()
    assert "Serial console" not in bare


def test_no_console_right_no_serial_link(serial_host: Host, tenant_user: User) -> None:
    Grant.objects.create(host=serial_host, domain_uuid=SERIAL_UUID, user=tenant_user)  # may view only
    page = client_for(tenant_user).get(f"/domains/serial/{SERIAL_UUID}/")
    assert page.status_code == 200
    assert "Serial console" not in page.content.decode()


def test_serial_page_and_tickets_for_each_role(tenant: User, other_tenant_user: User, operator_user: User) -> None:
    url = f"/consoles/serial/{SERIAL_UUID}/serial/"
    page = client_for(tenant).get(url)
    assert page.status_code == 200
    assert 'data-kind="serial"' in page.content.decode()
    assert page["Referrer-Policy"] == "no-referrer"
    assert client_for(operator_user).post(url + "tickets/", HTTP_HOST=PAGE).status_code == 200
    for client in (client_for(other_tenant_user), client_for(None)):
        assert client.get(url).status_code in (302, 404)
        assert client.post(url + "tickets/", HTTP_HOST=PAGE).status_code in (302, 404)
    assert not ConsoleTicket.objects.filter(user=other_tenant_user).exists()


def test_a_machine_without_a_serial_port_has_no_serial_console(tenant: User) -> None:
    client = client_for(tenant)
    page = client.get(f"/consoles/serial/{BARE_UUID}/serial/")
    assert page.status_code == 409
    assert "no serial port" in page.content.decode()
    refused = client.post(f"/consoles/serial/{BARE_UUID}/serial/tickets/", HTTP_HOST=PAGE)
    assert refused.status_code == 409
    assert "no serial port" in refused.json()["error"]


def test_a_serial_ticket_does_not_open_a_display_at_the_proxy(tenant: User) -> None:
    token = issue(client_for(tenant))
    with pytest.raises(AuthenticationError):
        ConsoleTokenPlugin().lookup(token)
    denied = AuditEntry.objects.get(action="console.open")
    assert denied.result == AuditEntry.Result.DENIED
    assert "serial console ticket, not for this socket" in denied.message


# --- the websocket -------------------------------------------------------------------------------------


class FakeLine:
    """A stand-in for virt.open_serial: echoes what is typed, upper-cased, as a guest's shell would answer."""

    def __init__(self) -> None:
        self.opened: list[tuple[str, int]] = []
        self.closed = asyncio.Event()

    def open(self, uri: str, uuid: str, *, run_id: int, on_data: Callable[[bytes], None],
             on_end: Callable[[str], None]) -> FakeLine:
        self.opened.append((uuid, run_id))
        self.on_data = on_data
        on_data(b"\r\nlogin: ")
        return self

    def write(self, data: bytes) -> None:
        self.on_data(data.upper())

    def close(self) -> None:
        self.closed.set()


@pytest.fixture
def line(monkeypatch: pytest.MonkeyPatch) -> FakeLine:
    fake = FakeLine()
    monkeypatch.setattr(virt, "open_serial", fake.open)
    return fake


async def issued_to(user: User) -> tuple[str, Client]:
    """A serial ticket as the console page of the user's session asks for it, and that session."""
    client = await database_sync_to_async(client_for)(user)
    return await database_sync_to_async(issue)(client), client


async def open_socket(token: str, user: User | None, *, origin: tuple[bytes, bytes] = ORIGIN,
                      ) -> tuple[WebsocketCommunicator, bool]:
    headers = [origin, HOST]
    if user is not None:
        client = await database_sync_to_async(client_for)(user)
        headers.append((b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()))
    communicator = WebsocketCommunicator(router, f"/ws/consoles/serial/?ticket={token}", headers=headers)
    connected, _ = await communicator.connect(timeout=5)
    return communicator, connected


async def test_the_socket_relays_the_line_once_per_ticket_and_audits(tenant: User, line: FakeLine) -> None:
    token, _ = await issued_to(tenant)
    socket, connected = await open_socket(token, tenant)
    assert connected
    assert await socket.receive_from(timeout=5) == b"\r\nlogin: "
    await socket.send_to(bytes_data=b"root\r")
    assert await socket.receive_from(timeout=5) == b"ROOT\r"
    assert line.opened and line.opened[0][0] == SERIAL_UUID
    again, connected_again = await open_socket(token, tenant)
    assert not connected_again  # single use
    await socket.disconnect()
    await asyncio.wait_for(line.closed.wait(), 5)
    actions = await database_sync_to_async(lambda: list(AuditEntry.objects.filter(
        action__in=("console.open", "console.close")).order_by("pk").values_list("action", "result")))()
    assert actions == [("console.open", AuditEntry.Result.SUCCEEDED), ("console.open", AuditEntry.Result.DENIED),
                       ("console.close", AuditEntry.Result.SUCCEEDED)]


async def test_the_socket_refuses_another_origin_another_user_and_a_display_ticket(
        tenant: User, other_tenant_user: User, line: FakeLine) -> None:
    token, client = await issued_to(tenant)
    for origin, user in (((b"origin", b"http://localhost:8001"), tenant), (ORIGIN, other_tenant_user), (ORIGIN, None)):
        _, connected = await open_socket(token, user, origin=origin)
        assert not connected
    display = await database_sync_to_async(lambda: client.post(
        f"/consoles/serial/{VNC_UUID}/tickets/", HTTP_HOST=PAGE).json()["tickets"][0])()
    _, connected = await open_socket(display, tenant)
    assert not connected
    assert not line.opened
    _, connected = await open_socket(token, tenant)  # still unused: the refusals above spent nothing
    assert connected


async def open_line(user: User) -> tuple[WebsocketCommunicator, Client]:
    """An open serial console of the user's session, past the machine's first bytes; and that session."""
    token, client = await issued_to(user)
    socket = WebsocketCommunicator(router, f"/ws/consoles/serial/?ticket={token}", headers=[
        ORIGIN, HOST, (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())])
    assert (await socket.connect(timeout=5))[0]
    await socket.receive_from(timeout=5)
    return socket, client


async def test_logging_out_ends_an_open_serial_console(tenant: User, line: FakeLine, settings) -> None:
    settings.CONSOLE_RECHECK_SECONDS = 0.1
    socket, client = await open_line(tenant)
    await database_sync_to_async(client.logout)()
    closing = await socket.receive_output(timeout=5)
    assert (closing["type"], closing["code"], closing["reason"]) == ("websocket.close", 4001,
                                                                      "Console ended: session ended")
    await asyncio.wait_for(line.closed.wait(), 5)


async def test_a_revoked_right_ends_an_open_serial_console_and_its_page_says_why(
        tenant: User, line: FakeLine, settings) -> None:
    settings.CONSOLE_RECHECK_SECONDS = 0.1
    socket, client = await open_line(tenant)
    await database_sync_to_async(Grant.objects.filter(user=tenant, domain_uuid=SERIAL_UUID).update)(
        can_console=False)
    closing = await socket.receive_output(timeout=5)
    assert (closing["code"], closing["reason"]) == (4001, "Console ended: console right revoked")
    # The console pages explain the reasons the portal closes with (consoles/static/consoles/tickets.js).
    page = await database_sync_to_async(lambda: client.get(f"/consoles/serial/{VNC_UUID}/",
                                                           HTTP_HOST=PAGE).content.decode())()
    assert '"Console ended: console right revoked": "The console closed: your right to use this machine' in page


async def test_a_driver_without_console_streams_refuses_and_says_why(tenant: User) -> None:
    token, _ = await issued_to(tenant)
    _, connected = await open_socket(token, tenant)
    assert not connected
    closed = await database_sync_to_async(lambda: AuditEntry.objects.get(action="console.close").message)()
    assert "serial console unavailable" in closed and "not supported" in closed
