"""A VM's row menu in a real browser: start, pause, resume and force off, each without a reload."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import LiveApp, inventory_host, login

pytestmark = pytest.mark.e2e

VM_UUID = "0a0b0c0d-0000-4000-8000-00000000e2e1"
INVENTORY = f"""<node>
  <domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>
    <name>menu-01</name><uuid>{VM_UUID}</uuid><memory>131072</memory><vcpu>1</vcpu>
    <os><type>hvm</type></os>
    <test:runstate>5</test:runstate>
  </domain>
</node>
"""


@pytest.fixture(scope="module")
def menu_host(live_app: LiveApp, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with inventory_host(live_app, tmp_path_factory.mktemp("menu"), "menu-xml", INVENTORY) as host:
        yield host


def choose(page: Page, action: str, expected_state: str) -> None:
    row = page.locator(f"#domain-menu-xml-{VM_UUID}")
    row.locator("summary", has_text="Actions").click()
    row.locator(f'button[data-action="{action}"]').click()
    # The row is swapped for a fresh one: wait on the fresh row's state, as a person watches the page.
    expect(page.locator(f"#domain-menu-xml-{VM_UUID}")).to_have_attribute("data-state", expected_state)


def test_start_pause_resume_force_off_from_the_row_menu(page: Page, live_app: LiveApp, menu_host: str) -> None:
    login(page, "admin", live_app.admin_password)
    page.goto(f"/domains/?all&host={menu_host}")
    page.evaluate("window.__sameDocument = true")
    page.on("dialog", lambda dialog: dialog.accept())  # force off asks for confirmation

    choose(page, "start", "running")
    expect(page.locator("#messages")).to_contain_text("menu-01 started.")
    choose(page, "pause", "paused")
    choose(page, "resume", "running")
    choose(page, "force-off", "shut off")
    expect(page.locator("#messages")).to_contain_text("menu-01 forced off.")

    row = page.locator(f"#domain-menu-xml-{VM_UUID}")
    row.locator("summary", has_text="Actions").click()
    offered = row.locator("button[data-action]").evaluate_all("buttons => buttons.map(b => b.dataset.action)")
    assert offered == ["start", "autostart-on"]
    assert page.evaluate("window.__sameDocument") is True, "an action reloaded the page"
