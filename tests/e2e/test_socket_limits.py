"""What a person sees in Chromium when a console limit refuses a connection, and when the session behind
an open live page ends elsewhere. A test-driver host with a VNC display: no lab, no console proxy."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, expect

from tests.e2e.conftest import login
from tests.support.consoles import ConsoleStack
from tests.support.portal import free_port

pytestmark = pytest.mark.e2e

USER = "tina"
UUID = "0c0a0e00-0000-4000-8000-0000000000e2"


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleStack]:
    directory = tmp_path_factory.mktemp("socket-limits")
    inventory = directory / "inventory.xml"
    inventory.write_text(
        f"<node><domain type='test'><name>vm-e2e</name><uuid>{UUID}</uuid><memory>65536</memory><vcpu>1</vcpu>"
        "<os><type>hvm</type></os><devices><graphics type='vnc' port='5931' autoport='no'>"
        "<listen type='address' address='127.0.0.1'/></graphics></devices></domain></node>")
    stack = ConsoleStack(directory / "var", settings={
        "VMPORTAL_CONSOLE_TICKETS_PER_MINUTE": "1", "VMPORTAL_LIVE_RECHECK_SECONDS": "0.5",
        "VMPORTAL_CONSOLE_URL": f":{free_port()}/websockify"})  # nothing listens there: no console opens
    Path(stack.var_dir).mkdir()
    stack.setup({"e2e": f"test://{inventory}"})
    stack.user(USER, grants=(("e2e", UUID),))
    stack.settings["url"] = f"http://127.0.0.1:{stack.daphne()}"
    yield stack
    stack.stop()


@pytest.fixture
def context(browser: Browser, portal: ConsoleStack) -> Iterator[BrowserContext]:
    context = browser.new_context(base_url=portal.settings["url"])
    context.set_default_timeout(15_000)
    yield context
    context.close()


def test_the_console_page_says_why_a_limit_refused_it(context: BrowserContext) -> None:
    page = context.new_page()
    login(page, USER)
    console = context.new_page()
    console.goto(f"/consoles/e2e/{UUID}/")  # asks for the minute's one ticket; its websocket then fails
    expect(console.locator("#console-state")).not_to_have_attribute("data-state", "connecting")
    console.locator("#reconnect").click()
    state = console.locator("#console-state")
    expect(state).to_have_attribute("data-state", "failed")
    expect(state).to_contain_text("You opened 1 console connection in the last minute, the most allowed")


def test_an_open_page_says_so_when_its_session_ends_elsewhere(context: BrowserContext, portal: ConsoleStack) -> None:
    page = context.new_page()
    login(page, USER)
    indicator = page.locator("#live-indicator")
    expect(indicator).to_have_attribute("data-live", "on")
    portal.shell("from django.contrib.sessions.models import Session\nSession.objects.all().delete()")
    expect(indicator).to_have_text("logged out")
    expect(indicator).to_have_attribute("data-live", "off")
    page.wait_for_timeout(1500)  # several re-check intervals and reconnect delays: no retry brings it back
    expect(indicator).to_have_text("logged out")
