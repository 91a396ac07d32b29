"""A list page whose browser stops reading, on a real daphne: its pushes stop once 1 MiB waits for it, and
once it reads again it takes what waited and is told to fetch its data again (vmportal.frames).

The portal is tests/support/changing_watchers.py's daphne with the embedded watchers of test:///default,
whose `test` VM it pauses and resumes on command; the page is a raw websocket with a small receive
buffer that stops reading while the VM changes 4,000 times.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.changing_watchers import prepare_portal
from tests.support.portal import LiveSocket, free_port, portal_env, stop_process, upgrade_request, wait_for_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ROW_BYTES = 2100  # a little more than one row's frame weighs
CHANGES = 4000  # rows enough to fill the kernel's buffers (a few MiB on loopback) and daphne's 1 MiB past them


def start_portal(tmp_path: Path) -> tuple[subprocess.Popen[str], int, str]:
    (tmp_path / "static").mkdir()
    env = portal_env(tmp_path, VMPORTAL_LOG_LEVEL="WARNING")
    session_key = prepare_portal(env)
    port = free_port()
    portal = subprocess.Popen([sys.executable, "-m", "tests.support.changing_watchers", "--daphne", str(port),
                               "--watch"], cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    assert portal.stdout is not None and portal.stdout.readline().strip() == "ready"
    wait_for_port(port, portal)
    return portal, port, session_key


async def test_a_page_that_stopped_reading_is_sent_nothing_more_then_fetches_its_data_again(
    tmp_path: Path
) -> None:
    portal, port, session_key = start_portal(tmp_path)
    try:
        browser = socket.socket()
        browser.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)  # before connecting: a small window
        browser.connect(("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=browser, limit=1 << 24)
        writer.write(upgrade_request(port, "/ws/domains/?all", session_key=session_key))
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
        transport = writer.transport
        assert isinstance(transport, asyncio.Transport)
        transport.pause_reading()  # the browser stalls

        assert portal.stdin is not None and portal.stdout is not None
        portal.stdin.write(f"go {CHANGES} 0.003\n")
        portal.stdin.flush()
        changes = json.loads(await asyncio.to_thread(portal.stdout.readline))["changes"]
        assert len(changes) == CHANGES
        await asyncio.sleep(1)

        transport.resume_reading()
        page = LiveSocket(reader, writer)
        rows = 0
        while b'hx-swap-oob="refetch:#results"' not in (message := await asyncio.wait_for(page.receive_text(), 10)):
            rows += b'hx-swap-oob="upsert:#results tbody"' in message
        # What waited was delivered (the kernel's buffers, then daphne's up to 1 MiB), the rest dropped for a refetch.
        assert (1 << 20) / ROW_BYTES < rows < CHANGES
        while b'data-live="on"' not in await asyncio.wait_for(page.receive_text(), 10):  # live again
            pass
        page.close()
    finally:
        if portal.stdin is not None:
            portal.stdin.close()
        stop_process(portal)
