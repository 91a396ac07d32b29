"""Per-user console limits against the real proxy: the open consoles are counted through the database, so
every proxy process (each console a thread of one) and the portal issuing tickets see the same numbers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import lab
from tests.conftest import LAB_HOSTS
from tests.integration.helpers import host_of, virsh
from tests.support.consoles import ClientWebSocket, ConsoleStack, Stream, rfb_handshake, wait_for

pytestmark = pytest.mark.integration

ORIGIN = "http://127.0.0.1:8000"
USER = "lena"
LIMIT = 2


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, lab_session: None) -> Iterator[ConsoleStack]:
    hosts = lab.up(hosts=LAB_HOSTS)
    stack = ConsoleStack(tmp_path_factory.mktemp("console-limits"), settings={
        "VMPORTAL_CONSOLE_OPEN_LIMIT": str(LIMIT), "VMPORTAL_CONSOLE_TICKETS_PER_MINUTE": "0",
        "VMPORTAL_CONSOLE_RECHECK_SECONDS": "0.5"})
    stack.setup({host.name: host.uri for host in hosts})
    stack.user(USER, grants=((host_of(hosts, "demo-vga").name, virsh(host_of(hosts, "demo-vga"), "domuuid",
                                                                     "demo-vga")),))
    stack.settings["port"] = str(stack.proxy())
    yield stack
    stack.stop()


def open_console(stack: ConsoleStack, token: str, session: str) -> Stream:
    ws = ClientWebSocket({"Cookie": f"sessionid={session}"})
    return Stream(ws.open(f"ws://127.0.0.1:{stack.settings['port']}/websockify?token={token}", origin=ORIGIN,
                          timeout=30.0))


def handshake(stack: ConsoleStack, stream: Stream) -> str:
    """The display's name, read through the proxy; the proxy's log tells why when it does not answer."""
    try:
        return rfb_handshake(stream)[2]
    except TimeoutError as error:
        raise AssertionError(f"no RFB handshake through the proxy; its log:\n{stack.log('consoleproxy')[-3000:]}") \
            from error


def test_consoles_open_at_once_are_counted_across_proxy_processes(stack: ConsoleStack) -> None:
    hosts = lab.up(hosts=LAB_HOSTS)
    host = host_of(hosts, "demo-vga")
    uuid, session = virsh(host, "domuuid", "demo-vga"), stack.login(USER)
    consoles = []
    for _ in range(LIMIT):  # one after the other, as a user opens tabs
        consoles.append(open_console(stack, stack.tickets(USER, host.name, uuid)[0], session))
        assert "demo-vga" in handshake(stack, consoles[-1])

    # The portal, another process, sees both and refuses a third ticket, saying why.
    with pytest.raises(RuntimeError, match=f"You have {LIMIT} consoles open"):
        stack.tickets(USER, host.name, uuid)
    # A ticket issued while the limit was off still does not open a third console at the proxy.
    stack.settings["VMPORTAL_CONSOLE_OPEN_LIMIT"] = "0"
    try:
        [extra] = stack.tickets(USER, host.name, uuid)
    finally:
        stack.settings["VMPORTAL_CONSOLE_OPEN_LIMIT"] = str(LIMIT)
    with pytest.raises(Exception, match="403"):
        open_console(stack, extra, session)

    consoles.pop().ws.close()  # its process audits the close and marks the ticket closed
    count = ("from consoles.models import ConsoleTicket\n"
             f"result = ConsoleTicket.objects.filter(user__username={USER!r}, used_at__isnull=False,"
             " closed_at__isnull=True).count()\n")
    wait_for(lambda: stack.shell(count) == LIMIT - 1, 10, "the closed console is still counted")
    stream = open_console(stack, stack.tickets(USER, host.name, uuid)[0], session)
    assert "demo-vga" in handshake(stack, stream)
    stream.ws.close()
    for stream in consoles:
        stream.ws.close()
