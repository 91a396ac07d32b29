"""The console tab and the VM page in Chromium: a click anywhere in the console area gives the guest the
keyboard; a revoked right closes the console saying why, and turns the VM page into a notice without its
controls. A test-driver host whose VM's VNC display is a blank RFB server of the test's own: no lab."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.e2e.conftest import login
from tests.e2e.test_console import click_beside_the_screen
from tests.support.consoles import BlankRfbDisplay, ConsoleStack, display_host_uri
from tests.support.portal import free_port

pytestmark = pytest.mark.e2e

USER = "tina"
UUID = "0c0a0e00-0000-4000-8000-0000000000f1"


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleStack]:
    directory = tmp_path_factory.mktemp("console-states")
    display = BlankRfbDisplay()
    proxy_port = free_port()
    stack = ConsoleStack(directory / "var", settings={
        "VMPORTAL_CONSOLE_URL": f":{proxy_port}/websockify", "VMPORTAL_CONSOLE_RECHECK_SECONDS": "1",
        "VMPORTAL_LIVE_RECHECK_SECONDS": "0.5"})
    Path(stack.var_dir).mkdir()
    try:
        stack.setup({"e2e": display_host_uri(directory / "inventory.xml", {"vm-blank": (UUID, display.port)})})
        stack.user(USER, grants=(("e2e", UUID),))
        stack.proxy(proxy_port)
        stack.settings["url"] = f"http://127.0.0.1:{stack.daphne()}"
        yield stack
    finally:
        stack.stop()


def open_console(context: BrowserContext) -> tuple[Page, Page]:
    """The VM's page and its console tab, connected."""
    page = context.new_page()
    login(page, USER)
    page.goto(f"/domains/e2e/{UUID}/")
    expect(page.locator("#live-indicator")).to_have_attribute("data-live", "on")
    console = context.new_page()
    console.goto(f"/consoles/e2e/{UUID}/")
    expect(console.locator("#console-state")).to_have_attribute("data-state", "connected")
    return page, console


def test_a_click_anywhere_in_the_console_area_gives_the_guest_the_keyboard(context: BrowserContext) -> None:
    _page, console = open_console(context)
    console.locator("#send-combo").focus()  # the keyboard elsewhere first
    click_beside_the_screen(console)
    assert console.evaluate("document.activeElement.tagName") == "CANVAS"  # where noVNC hears the keys


def test_a_revoked_right_closes_the_console_saying_why_and_the_vm_page_hides_its_controls(
    context: BrowserContext, portal: ConsoleStack
) -> None:
    page, console = open_console(context)
    expect(page.locator("#snapshots")).to_be_visible()
    portal.shell(f"from domains.models import Grant\nGrant.objects.filter(user__username={USER!r}).delete()")
    state = console.locator("#console-state")
    expect(state).to_have_attribute("data-state", "ended")
    expect(state).to_have_text("The console closed: your right to use this machine's console was revoked.")
    expect(page.locator("#domain-page .revoked")).to_contain_text("Your access to this machine was revoked")
    expect(page.locator("#snapshots")).to_have_count(0)
    expect(page.locator("#domain-page form")).to_have_count(0)
