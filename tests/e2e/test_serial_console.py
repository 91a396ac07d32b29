"""The serial console tab in Debian's Chromium: xterm.js against a lab guest's serial line, under the CSP.

The portal runs as `bin/run` runs it (daphne serves the serial socket itself). The test reads the
terminal through the page's `vmportalSerial.screenText()` (xterm's canvas renderer has no DOM text).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import BrowserContext, Page, expect

import lab
from tests.e2e.conftest import Violations, console_portal, login
from tests.integration.helpers import host_of, virsh
from tests.support.consoles import ConsoleStack

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

USER = "serial-tina"
GUEST = "demo-vga"


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory, hosts: list[lab.LabHost]) -> Iterator[ConsoleStack]:
    # daphne serves the serial socket itself: no console proxy.
    with console_portal(tmp_path_factory.mktemp("serial-e2e"), hosts, {USER: (GUEST,)}, proxy=False) as stack:
        yield stack


def wait_for_screen(terminal: Page, pattern: str, *, typing: str | None = None, timeout_ms: int = 20_000) -> str:
    """Waits until the terminal's text (trailing blanks cut) matches `pattern`; `typing` is typed first, and
    again every 3 s while it does not. Returns the text."""
    waited = 0
    while not re.search(pattern, text := terminal.evaluate("window.vmportalSerial.screenText()").rstrip()):
        if waited >= timeout_ms:
            raise AssertionError(f"the serial console never showed {pattern!r}:\n{text[-600:]}")
        if typing is not None and waited % 3000 == 0:
            terminal.keyboard.type(typing, delay=20)
        terminal.wait_for_timeout(250)
        waited += 250
    return text


def test_the_serial_console_shows_the_login_prompt_and_a_shell(context: BrowserContext,
                                                               hosts: list[lab.LabHost]) -> None:
    violations = Violations(context)
    page = context.new_page()
    login(page, USER)
    host = host_of(hosts, GUEST)
    page.goto(f"/domains/{host.name}/{virsh(host, 'domuuid', GUEST)}/")
    with context.expect_page() as opened:
        page.locator("a[data-action=serial-console]").click()
    terminal = opened.value
    expect(terminal.locator("#console-state")).to_have_attribute("data-state", "connected")
    terminal.locator("#terminal").click()
    # getty prompts again on Enter (or the shell an interrupted run left shows: leave it, getty prompts again)
    if not re.search(r"login:\Z", wait_for_screen(terminal, r"(login:|/root #)\Z", typing="\n")):
        wait_for_screen(terminal, r"login:\Z", typing="exit\n")
    terminal.keyboard.type("root\n", delay=20)
    wait_for_screen(terminal, r"/root #\Z")
    wait_for_screen(terminal, r"serial-e2e-42", typing="echo serial-e2e-$((6 * 7))\n")
    assert violations.of(terminal) == []
    terminal.keyboard.type("exit\n", delay=20)
    terminal.close()
