"""The words the VM page's and the console tab's scripts show, in Chromium, for a user who chose Vietnamese: the
templates hand them over (data-text-*, data-line-*), the scripts put them on the page."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, Route, expect

from tests.e2e.conftest import LiveApp, inventory_host, login

pytestmark = pytest.mark.e2e

VM_UUID = "0a0b0c0d-0000-4000-8000-0000000018e2"
INVENTORY = f"""<node>
  <domain type='test'>
    <name>vi-01</name><uuid>{VM_UUID}</uuid><memory unit='MiB'>256</memory><vcpu>1</vcpu>
    <os><type>hvm</type></os>
    <devices><graphics type='vnc' port='5931' autoport='no'><listen type='address' address='127.0.0.1'/></graphics>
    </devices>
  </domain>
</node>
"""
READER = "vi-reader"


@pytest.fixture(scope="module")
def vietnamese_reader(live_app: LiveApp, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A tenant who chose Vietnamese, with the console of a running VM of a module's own host."""
    with inventory_host(live_app, tmp_path_factory.mktemp("translations"), "vi-xml", INVENTORY) as host:
        live_app.create_user(READER)
        live_app.shell("from accounts.models import User\n"
                       f"User.objects.filter(username={READER!r}).update(language='vi')")
        live_app.grant(username=READER, host=host, uuid=VM_UUID, can_console=True)
        yield host


def not_available(route: Route) -> None:
    """The console's tickets refused, as when the right is revoked after the tab opened."""
    route.fulfill(status=404, content_type="application/json", body="{}")


def test_the_charts_legends_and_the_console_tab_s_state_are_in_the_reader_s_language(
    page: Page, vietnamese_reader: str
) -> None:
    login(page, READER)  # once: signing in is the slow part
    page.goto(f"/domains/{vietnamese_reader}/{VM_UUID}/")
    expect(page.locator("#usage-heading")).to_have_text("Mức sử dụng")
    expect(page.locator("[data-chart=cpu] .u-legend .u-label")).to_have_text(["Thời gian", "trung bình", "tối đa"])
    expect(page.locator("[data-chart=disk] .u-legend .u-label")).to_have_text(
        ["Thời gian", "đọc", "đọc, tối đa", "ghi", "ghi, tối đa"])

    page.route("**/tickets/", not_available)
    page.goto(f"/consoles/{vietnamese_reader}/{VM_UUID}/")
    expect(page.locator("#console-state")).to_have_text("Bạn không thể dùng máy này.")
    expect(page.locator("#console-state")).to_have_attribute("data-state", "failed")
    expect(page).to_have_title("vi-01 · màn hình điều khiển · vmportal")
