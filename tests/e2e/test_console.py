"""The console tab in Debian's Chromium: noVNC and spice-html5 against the lab's real guests.

The portal runs as `bin/run` runs it (daphne and `manage.py consoleproxy`), with its own database,
the proxy on another port of the same host (VMPORTAL_CONSOLE_URL=":PORT/websockify"). What the tests
type reaches the guest: the guest agent then finds the files the typed commands created.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from collections.abc import Iterator

import pytest
from playwright.sync_api import BrowserContext, Page, expect

import lab
from tests.e2e.conftest import CONSOLE_CONNECT_MS, console_portal, login
from tests.integration.helpers import host_of, virsh
from tests.support.consoles import ConsoleStack, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

USER = "tina"


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory, hosts: list[lab.LabHost]) -> Iterator[ConsoleStack]:
    granted: dict[str, tuple[str, ...]] = {USER: ("demo-vga", "demo-cirrus", "demo-spice")}
    with console_portal(tmp_path_factory.mktemp("console-e2e"), hosts, granted,
                        settings={"VMPORTAL_CONSOLE_RECHECK_SECONDS": "1"}) as stack:
        yield stack


def open_console(context: BrowserContext, hosts: list[lab.LabHost], name: str) -> tuple[Page, Page]:
    """Logs in, opens the VM's page and its Console link; returns (VM page, console tab)."""
    page = context.new_page()
    login(page, USER)
    host = host_of(hosts, name)
    page.goto(f"/domains/{host.name}/{virsh(host, 'domuuid', name)}/")
    with context.expect_page() as opened:
        page.locator("a[data-action=console]").click()
    console = opened.value
    expect(console.locator("#console-state")).to_have_attribute("data-state", "connected", timeout=CONSOLE_CONNECT_MS)
    return page, console


def screen_colours(console: Page) -> int:
    """How many different colours the console's canvas shows (1 = blank)."""
    return int(console.evaluate("""() => {
        const canvas = [...document.querySelectorAll('#screen canvas')].sort((a, b) => b.width - a.width)[0];
        if (!canvas || !canvas.width) return 0;
        const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        const seen = new Set();
        for (let i = 0; i < data.length && seen.size < 50; i += 4 * 7) {
            seen.add(data[i] << 16 | data[i + 1] << 8 | data[i + 2]);
        }
        return seen.size;
    }"""))


def guest_file(host: lab.LabHost, domain: str, path: str) -> bytes | None:
    """The file's content as the guest agent reads it, or None when it does not exist."""
    try:
        handle = json.loads(virsh(host, "qemu-agent-command", domain, json.dumps(
            {"execute": "guest-file-open", "arguments": {"path": path, "mode": "r"}}), "--timeout", "5"))["return"]
    except AssertionError:
        return None
    try:
        reply = json.loads(virsh(host, "qemu-agent-command", domain, json.dumps(
            {"execute": "guest-file-read", "arguments": {"handle": handle, "count": 4096}}), "--timeout", "5"))
        return base64.b64decode(reply["return"]["buf-b64"])
    finally:
        virsh(host, "qemu-agent-command", domain, json.dumps(
            {"execute": "guest-file-close", "arguments": {"handle": handle}}), "--timeout", "5")


def get_a_shell(console: Page) -> None:
    """The guest's tty1 shows a login prompt (root has no password) or, after an earlier test, a shell."""
    console.locator("#screen canvas").first.click()
    console.keyboard.press("Enter")
    console.keyboard.type("root\n", delay=30)
    console.wait_for_timeout(1500)


def click_beside_the_screen(console: Page) -> None:
    """A click in the console area but off the guest's canvas (at its actual size, there is room around it)."""
    console.select_option("#scale-mode", "none")
    box = console.locator("#screen").bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] - 5, box["y"] + box["height"] - 5
    assert console.evaluate("([x, y]) => document.elementFromPoint(x, y).tagName", [x, y]) != "CANVAS"
    console.mouse.click(x, y)


# demo-vga: VNC on lab1's loopback, through its SSH; demo-cirrus: VNC over TLS (VeNCrypt) on lab2's
# address; demo-spice: SPICE on lab2's address.
@pytest.mark.parametrize("name", ["demo-vga", "demo-cirrus", "demo-spice"])
def test_the_console_tab_shows_the_guest_and_takes_its_keyboard(context: BrowserContext, hosts: list[lab.LabHost],
                                                                name: str) -> None:
    _vm_page, console = open_console(context, hosts, name)
    assert console.locator("#console-name").text_content() == name
    wait_for(lambda: screen_colours(console) > 1, 30, "the console shows a blank screen")
    host = host_of(hosts, name)
    get_a_shell(console)

    # Typed on the keyboard after a click beside the guest's screen: anywhere in the console area will do.
    typed = f"/tmp/typed-{secrets.token_hex(4)}"
    click_beside_the_screen(console)
    console.keyboard.type(f"touch {typed}\n", delay=30)
    wait_for(lambda: guest_file(host, name, typed) is not None, 30, f"{typed} never appeared in the guest",
             interval=1)

    # Pasted as keystrokes from the toolbar, shifted characters included.
    word = secrets.token_hex(4)
    pasted = f"/tmp/pasted-{word}"
    console.locator(".paste summary").click()
    console.locator("#paste-text").fill(f"echo {word.upper()}-OK > {pasted}\n")
    console.locator("#paste-send").click()
    wait_for(lambda: guest_file(host, name, pasted) == f"{word.upper()}-OK\n".encode(), 30,
             f"{pasted} never held what was pasted", interval=1)


def test_ctrl_alt_del_and_reconnect_with_a_new_ticket(context: BrowserContext, hosts: list[lab.LabHost],
                                                      portal: ConsoleStack) -> None:
    _vm_page, console = open_console(context, hosts, "demo-vga")
    uuid = virsh(host_of(hosts, "demo-vga"), "domuuid", "demo-vga")
    tickets = ("from audit.models import AuditEntry\nresult = AuditEntry.objects.filter("
               f"action='console.ticket', domain_uuid={uuid!r}).count()\n")
    before = portal.shell(tickets)
    console.locator("#reconnect").click()
    expect(console.locator("#console-state")).to_have_attribute("data-state", "connected")
    assert portal.shell(tickets) == before + 1
    expect(console.locator("#send-cad")).to_be_enabled()
    assert re.fullmatch(r"no-referrer", console.evaluate(
        "() => document.querySelector('meta[name=referrer]').content"))


def test_logging_out_ends_the_open_console(context: BrowserContext, hosts: list[lab.LabHost]) -> None:
    vm_page, console = open_console(context, hosts, "demo-vga")
    vm_page.locator("form.logout button").click()
    expect(console.locator("#console-state")).to_have_attribute("data-state", "ended", timeout=15_000)
    expect(console.locator("#console-state")).to_contain_text("your session ended")
    console.locator("#reconnect").click()
    expect(console.locator("#console-state")).to_have_attribute("data-state", "failed")
