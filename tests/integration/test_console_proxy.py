"""The console proxy (`manage.py consoleproxy`) against the lab's real QEMU displays.

A portal with its own database issues tickets; a websocket client goes through the proxy as noVNC
would, completes the RFB handshake and receives a framebuffer update.
"""

from __future__ import annotations

import http.client
import json
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path

import pytest

import lab
from tests.conftest import LAB_HOSTS
from tests.integration.helpers import host_of, virsh
from tests.support.consoles import (
    ClientWebSocket,
    ConsoleStack,
    Stream,
    close_reason,
    read_framebuffer_update,
    request_frame,
    rfb_handshake,
    wait_for,
)

pytestmark = pytest.mark.integration

ORIGIN = "http://127.0.0.1:8000"
USER = "tina"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, lab_session: None) -> Iterator[ConsoleStack]:
    hosts = lab.up(hosts=LAB_HOSTS)
    # These tests ask for many tickets in a minute; test_console_limits.py is about the limits.
    stack = ConsoleStack(tmp_path_factory.mktemp("console-proxy"), settings={
        "VMPORTAL_CONSOLE_RECHECK_SECONDS": "0.5",
        "VMPORTAL_CONSOLE_TICKETS_PER_MINUTE": "0", "VMPORTAL_CONSOLE_OPEN_LIMIT": "0"})
    stack.setup({host.name: host.uri for host in hosts})
    stack.user(USER, grants=tuple(
        (host_of(hosts, name).name, virsh(host_of(hosts, name), "domuuid", name))
        for name in ("demo-vga", "demo-cirrus", "demo-vmvga")))
    stack.user("otto")
    stack.settings["port"] = str(stack.proxy())
    yield stack
    stack.stop()


@pytest.fixture
def hosts(stack: ConsoleStack) -> list[lab.LabHost]:
    return lab.up(hosts=LAB_HOSTS)


def proxy_url(stack: ConsoleStack, token: str) -> str:
    return f"ws://127.0.0.1:{stack.settings['port']}/websockify?token={token}"


def connect(stack: ConsoleStack, token: str, *, session: str, origin: str | None = ORIGIN) -> Stream:
    ws = ClientWebSocket({"Cookie": f"sessionid={session}"})
    return Stream(ws.open(proxy_url(stack, token), origin=origin))


def open_vm(stack: ConsoleStack, hosts: list[lab.LabHost], name: str, session: str) -> Stream:
    host = host_of(hosts, name)
    [token] = stack.tickets(USER, host.name, virsh(host, "domuuid", name))
    return connect(stack, token, session=session)


@pytest.mark.parametrize("name", ["demo-vga", "demo-cirrus", "demo-vmvga"])
def test_a_browser_websocket_reaches_the_guest_screen(stack: ConsoleStack, hosts: list[lab.LabHost],
                                                      name: str) -> None:
    stream = open_vm(stack, hosts, name, stack.login(USER))
    width, height, desktop = rfb_handshake(stream)
    assert (width, height) >= (320, 200)
    assert name in desktop  # QEMU names the desktop after the guest
    request_frame(stream, width, height)
    pixels = read_framebuffer_update(stream, width, height)
    assert len(set(pixels[i:i + 4] for i in range(0, len(pixels), 4))) > 1, "the screen is blank"
    stream.ws.close()


def test_a_ticket_opens_one_websocket(stack: ConsoleStack, hosts: list[lab.LabHost]) -> None:
    host, session = host_of(hosts, "demo-vga"), stack.login(USER)
    [token] = stack.tickets(USER, host.name, virsh(host, "domuuid", "demo-vga"))
    first = connect(stack, token, session=session)
    rfb_handshake(first)
    with pytest.raises(Exception, match="403"):
        connect(stack, token, session=session)
    first.ws.close()


@pytest.mark.parametrize("origin", [None, "http://evil.example", "null",
                                    "http://127.0.0.1:9000",  # another app on another port of the page's host
                                    "https://127.0.0.1:8000"])  # the page's host and port, another scheme
def test_other_origins_are_refused(stack: ConsoleStack, hosts: list[lab.LabHost], origin: str | None) -> None:
    host = host_of(hosts, "demo-vga")
    [token] = stack.tickets(USER, host.name, virsh(host, "domuuid", "demo-vga"))
    with pytest.raises(Exception, match="403"):
        connect(stack, token, session=stack.login(USER), origin=origin)


def test_a_ticket_opens_from_the_origin_of_the_page_it_was_issued_to(stack: ConsoleStack,
                                                                     hosts: list[lab.LabHost]) -> None:
    host, session = host_of(hosts, "demo-vga"), stack.login(USER)
    page = "https://portal.example.org:8443"
    [token] = stack.tickets(USER, host.name, virsh(host, "domuuid", "demo-vga"), origin=page)
    with pytest.raises(Exception, match="403"):
        connect(stack, token, session=session)  # the default page's origin, an allowed host too
    stream = connect(stack, token, session=session, origin=page)
    assert "demo-vga" in rfb_handshake(stream)[2]
    stream.ws.close()


def test_another_users_session_is_refused(stack: ConsoleStack, hosts: list[lab.LabHost]) -> None:
    host = host_of(hosts, "demo-vga")
    [token] = stack.tickets(USER, host.name, virsh(host, "domuuid", "demo-vga"))
    with pytest.raises(Exception, match="403"):
        connect(stack, token, session=stack.login("otto"))


def test_the_client_cannot_choose_the_target(stack: ConsoleStack, hosts: list[lab.LabHost]) -> None:
    host, session = host_of(hosts, "demo-vga"), stack.login(USER)
    [token] = stack.tickets(USER, host.name, virsh(host, "domuuid", "demo-vga"))
    for injected in (f"{token}:127.0.0.1:22", "x" * 43 + ":127.0.0.1:22"):
        with pytest.raises(Exception, match="403"):
            connect(stack, injected, session=session)
    # Extra parameters are ignored: the ticket still leads to demo-vga's display, nowhere else.
    ws = ClientWebSocket({"Cookie": f"sessionid={session}"})
    stream = Stream(ws.open(proxy_url(stack, token) + "&host=127.0.0.1&port=22&path=/etc", origin=ORIGIN))
    assert "demo-vga" in rfb_handshake(stream)[2]
    ws.close()


def test_the_proxy_serves_no_files(stack: ConsoleStack) -> None:
    for path in ("/", "/vnc.html", "/etc/passwd", "/websockify", "/../"):
        connection = http.client.HTTPConnection("127.0.0.1", int(stack.settings["port"]), timeout=5)
        connection.request("GET", path)
        response = connection.getresponse()
        assert response.status == 405, path
        assert b"root:" not in response.read()


def test_logout_closes_an_open_console(stack: ConsoleStack, hosts: list[lab.LabHost]) -> None:
    session = stack.login(USER)
    stream = open_vm(stack, hosts, "demo-vga", session)
    width, height, _ = rfb_handshake(stream)
    stack.shell("from django.contrib.sessions.models import Session\n"
                f"Session.objects.filter(session_key={session!r}).delete()")
    assert "4001" in close_reason(stream, width, height)


def test_a_revoked_right_closes_an_open_console(stack: ConsoleStack, hosts: list[lab.LabHost]) -> None:
    stream = open_vm(stack, hosts, "demo-cirrus", stack.login(USER))
    width, height, _ = rfb_handshake(stream)
    uuid = virsh(host_of(hosts, "demo-cirrus"), "domuuid", "demo-cirrus")
    set_right = "from domains.models import Grant\nGrant.objects.filter(domain_uuid={!r}).update(can_console={})"
    stack.shell(set_right.format(uuid, False))
    try:
        assert "4001" in close_reason(stream, width, height)
    finally:
        stack.shell(set_right.format(uuid, True))
    rows = stack.shell(
        "from audit.models import AuditEntry\n"
        f"result = list(AuditEntry.objects.filter(domain_uuid={uuid!r}, action='console.close')"
        ".values_list('message', flat=True))\n")
    assert any("console right revoked" in message and "sha256:" in message for message in rows)


def test_open_and_close_are_audited(stack: ConsoleStack, hosts: list[lab.LabHost]) -> None:
    host = host_of(hosts, "demo-vmvga")
    uuid = virsh(host, "domuuid", "demo-vmvga")
    [token] = stack.tickets(USER, host.name, uuid)
    stream = connect(stack, token, session=stack.login(USER))
    rfb_handshake(stream)
    stream.ws.close()
    code = (f"from audit.models import AuditEntry\nresult = [[e.action, e.result, e.actor_name, e.host_name,"
            f" e.domain_name, e.client_addr, e.message] for e in AuditEntry.objects.filter(domain_uuid={uuid!r},"
            " action__in=['console.open', 'console.close']).order_by('created_at')]\n")
    wait_for(lambda: len(stack.shell(code)) >= 2, 10, "no close audited")
    rows = [row for row in stack.shell(code) if token not in json.dumps(row)]
    (_, opened, _, _, _, _, opened_msg), (_, closed, *_rest, closed_msg) = rows[-2:]
    assert (rows[-2][0], rows[-1][0]) == ("console.open", "console.close")
    assert rows[-2][2:6] == [USER, host.name, "demo-vmvga", "127.0.0.1"]
    assert opened == closed == "succeeded"
    assert "sha256:" in opened_msg and "closed by the browser" in closed_msg
    assert token not in stack.log("consoleproxy")  # masked in the proxy's log


PASSWORD_DOMAIN = """<domain type='qemu'>
  <name>{name}</name><uuid>{uuid}</uuid><memory unit='MiB'>32</memory>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <graphics type='vnc' autoport='yes' passwd='s3cretpw'/>
    <video><model type='vga'/></video>
  </devices>
</domain>"""


@pytest.fixture
def password_vm(stack: ConsoleStack, hosts: list[lab.LabHost], tmp_path: Path) -> Iterator[tuple[lab.LabHost, str]]:
    """A transient, paused guest whose VNC display has a password (QEMU serves the screen while paused)."""
    host, uuid = hosts[0], str(uuidlib.uuid4())
    xml = tmp_path / "password-vm.xml"
    xml.write_text(PASSWORD_DOMAIN.format(name=f"console-pw-{uuid[:8]}", uuid=uuid))
    virsh(host, "create", str(xml), "--paused")
    stack.shell("from accounts.models import User\nfrom domains.models import Grant, Host\n"
                f"Grant.objects.create(host=Host.objects.get(name={host.name!r}), domain_uuid={uuid!r},"
                f" user=User.objects.get(username={USER!r}), can_console=True)")
    yield host, uuid
    virsh(host, "destroy", uuid)


def test_the_proxy_answers_the_display_password(stack: ConsoleStack, password_vm: tuple[lab.LabHost, str]) -> None:
    host, uuid = password_vm
    assert "passwd" not in virsh(host, "dumpxml", uuid)  # the password is not in the ordinary XML
    [token] = stack.tickets(USER, host.name, uuid)
    stream = connect(stack, token, session=stack.login(USER))
    width, height, desktop = rfb_handshake(stream)  # security type None: the browser needs no password
    assert "console-pw-" in desktop
    request_frame(stream, width, height)
    assert read_framebuffer_update(stream, width, height)
    stream.ws.close()


def test_a_restarted_vm_refuses_the_ticket_issued_before(stack: ConsoleStack,
                                                         password_vm: tuple[lab.LabHost, str],
                                                         tmp_path: Path) -> None:
    host, uuid = password_vm
    [token] = stack.tickets(USER, host.name, uuid)
    xml = tmp_path / "again.xml"
    xml.write_text(virsh(host, "dumpxml", "--security-info", uuid))
    virsh(host, "destroy", uuid)
    virsh(host, "create", str(xml), "--paused")  # same display, likely the same port: a new run
    with pytest.raises(Exception, match="403"):
        connect(stack, token, session=stack.login(USER))
    [fresh] = stack.tickets(USER, host.name, uuid)
    rfb_handshake(connect(stack, fresh, session=stack.login(USER)))
