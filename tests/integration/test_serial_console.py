"""The serial console's websocket (daphne, consoles.consumers) against the lab's real guests.

A portal with its own database issues a serial ticket; a websocket client opens it as the serial
console page would, gets the guest's login prompt (lab/guest/inittab runs a getty on ttyS0), logs in as
root (no password in the lab's guests) and reads a typed command's output.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest

import lab
from tests.conftest import LAB_HOSTS
from tests.integration.helpers import host_of, virsh
from tests.support.consoles import ClientWebSocket, ConsoleStack, Stream, wait_for

pytestmark = pytest.mark.integration

USER = "sally"
GUEST = "demo-vga"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, lab_session: None) -> Iterator[ConsoleStack]:
    hosts = lab.up(hosts=LAB_HOSTS)
    stack = ConsoleStack(tmp_path_factory.mktemp("serial-console"), settings={
        "VMPORTAL_CONSOLE_RECHECK_SECONDS": "0.5", "VMPORTAL_CONSOLE_TICKETS_PER_MINUTE": "0"})
    stack.setup({host.name: host.uri for host in hosts})
    host = host_of(hosts, GUEST)
    stack.user(USER, grants=((host.name, virsh(host, "domuuid", GUEST)),))
    stack.settings["port"] = str(stack.daphne())
    yield stack
    stack.stop()


class BrowserSocket(ClientWebSocket):
    """Sends Host with its port, as browsers do (websockify's client leaves it out): daphne compares the
    Origin with the socket's own origin."""

    def __init__(self, headers: dict[str, str], *, host: str) -> None:
        super().__init__(headers)
        self._host = host

    def send_header(self, keyword: str, value: str) -> None:
        super().send_header(keyword, self._host if keyword == "Host" else value)


def open_serial(stack: ConsoleStack, session: str) -> Stream:
    page = f"http://127.0.0.1:{stack.settings['port']}"
    host = host_of(lab.up(hosts=LAB_HOSTS), GUEST)
    [token] = stack.tickets(USER, host.name, virsh(host, "domuuid", GUEST), origin=page, serial=True)
    ws = BrowserSocket({"Cookie": f"sessionid={session}"}, host=f"127.0.0.1:{stack.settings['port']}")
    return Stream(ws.open(f"ws://127.0.0.1:{stack.settings['port']}/ws/consoles/serial/?ticket={token}",
                          origin=page))


def read_until(stream: Stream, pattern: bytes, *, timeout: float, send: bytes | None = None) -> bytes:
    """What the line shows until `pattern` appears; `send` is typed again every few seconds meanwhile."""
    seen, deadline, next_send = b"", time.monotonic() + timeout, 0.0
    stream.ws.socket.settimeout(1.0)
    while not re.search(pattern, seen):
        now = time.monotonic()
        if now > deadline:
            raise AssertionError(f"no {pattern!r} on the serial line within {timeout} s; it showed {seen[-400:]!r}")
        if send is not None and now >= next_send:
            stream.write(send)
            next_send = now + 3.0
        try:
            seen += stream.chunk()
        except TimeoutError:
            continue
    return seen


def test_the_serial_console_gives_a_login_prompt_and_a_shell(stack: ConsoleStack) -> None:
    stream = open_serial(stack, stack.login(USER))
    try:
        # getty printed its prompt before anyone listened: Enter makes it print it again, as on a terminal
        # (or shows the shell an interrupted run left logged in: leave it, getty prompts again).
        if not re.search(rb"login: ?$", read_until(stream, rb"login: ?$|/root # ", timeout=30, send=b"\r")):
            read_until(stream, rb"login: ?$", timeout=30, send=b"exit\r")
        stream.write(b"root\r")
        read_until(stream, rb"/root # ", timeout=20)  # busybox ash's prompt (then it asks for the cursor)
        stream.write(b"echo serial-$((6 * 7))\r")
        read_until(stream, rb"serial-42", timeout=10)
    finally:
        stream.write(b"exit\r")  # back to getty, for whoever opens it next
        stream.ws.close()
    wait_for(lambda: "closed by the browser" in stack.shell(
        "from audit.models import AuditEntry\n"
        "result = ' '.join(AuditEntry.objects.filter(action='console.close').values_list('message', flat=True))"),
        10, "the close of the serial console is not in the audit log")


def test_logging_out_ends_the_serial_console(stack: ConsoleStack) -> None:
    session = stack.login(USER)
    stream = open_serial(stack, session)
    stack.shell("from django.contrib.sessions.models import Session\n"
                f"Session.objects.filter(session_key={session!r}).delete()")
    with pytest.raises(ConnectionError, match="4001"):
        read_until(stream, rb"(?!)", timeout=15)
