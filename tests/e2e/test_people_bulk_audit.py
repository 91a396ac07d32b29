"""Issue 17's flows in a real browser: share a VM from its page, bulk start three VMs, filter and export the
audit log. The VMs are this module's own host's (three shut off), so other modules' lists never see them."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import RESULTS_DIR, LiveApp, inventory_host, login

pytestmark = pytest.mark.e2e

HOST = "people-xml"
NAMES = ("crew-01", "crew-02", "crew-03")
UUIDS = {name: f"0a0b0c0d-0000-4000-8000-0000000017{index:02d}" for index, name in enumerate(NAMES, 1)}
TENANT = "tara-tenant"
DOMAIN = """  <domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>
    <name>{name}</name><uuid>{uuid}</uuid><memory>131072</memory><vcpu>1</vcpu>
    <os><type>hvm</type></os>
    <test:runstate>5</test:runstate>
  </domain>
"""
INVENTORY = "<node>\n" + "".join(DOMAIN.format(name=name, uuid=UUIDS[name]) for name in NAMES) + "</node>\n"


@pytest.fixture(scope="module")
def crew_host(live_app: LiveApp, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    live_app.create_user(TENANT)
    with inventory_host(live_app, tmp_path_factory.mktemp("people"), HOST, INVENTORY) as host:
        yield host


def test_an_admin_shares_a_vm_from_its_page_and_the_tenant_then_sees_it(page: Page, browser: Browser,
                                                                         live_app: LiveApp, crew_host: str) -> None:
    tenant_context = browser.new_context(base_url=live_app.url)
    tenant_page = tenant_context.new_page()
    login(tenant_page, TENANT)
    tenant_page.goto(f"/domains/?all&host={crew_host}")
    expect(tenant_page.locator("#results")).to_contain_text("No virtual machine matches these options.")

    login(page, "admin", live_app.admin_password)
    page.goto(f"/domains/{crew_host}/{UUIDS['crew-01']}/")
    sharing = page.locator("#sharing")
    expect(sharing).to_contain_text("Console: open its screen and keyboard in a browser tab.")
    expect(sharing.get_by_role("checkbox", name="Operate")).to_have_accessible_description(
        "start, shut down, reboot, pause, resume, save, snapshot and change its hardware; not delete it.")
    sharing.get_by_label("Tenant").select_option(label=TENANT)
    sharing.get_by_label("Operate").check()
    sharing.get_by_role("button", name="Share crew-01").click()
    expect(page.locator("#messages")).to_contain_text(f"crew-01 shared with {TENANT}.")
    shared = page.locator("#sharing tr[data-grant] td")
    expect(shared.nth(0)).to_have_text(TENANT)
    expect(shared.nth(1)).to_have_text("view, operate")

    tenant_page.reload()
    expect(tenant_page.locator("#results tbody tr[data-name]")).to_have_count(1)
    expect(tenant_page.locator(f"#domain-{crew_host}-{UUIDS['crew-01']}")).to_contain_text("crew-01")

    # The grants page's picker: typing part of a name chooses the machine, no UUID typed.
    page.goto("/people/grants/")
    page.get_by_label("Find a machine by name or host").fill("crew-02")
    expect(page.get_by_label("Virtual machine")).to_have_value(f"{crew_host}/{UUIDS['crew-02']}")
    page.get_by_label("Tenant").select_option(label=TENANT)
    page.get_by_role("button", name="Share", exact=True).click()
    expect(page.locator("#messages")).to_contain_text(f"crew-02 shared with {TENANT}.")
    tenant_page.reload()
    expect(tenant_page.locator("#results tbody tr[data-name]")).to_have_count(2)
    tenant_context.close()


def test_bulk_start_of_three_vms_shows_each_outcome_and_keeps_the_ticks(page: Page, live_app: LiveApp,
                                                                       crew_host: str) -> None:
    login(page, "admin", live_app.admin_password)
    page.goto(f"/domains/?all&host={crew_host}")
    page.on("dialog", lambda dialog: dialog.accept())  # "Apply this action to every ticked machine?"
    page.get_by_role("checkbox", name="Tick every machine on this page").check()
    page.get_by_label("With the ticked machines").select_option("start")
    page.get_by_role("button", name="Apply").click()

    results = page.locator("#bulk-results li")
    expect(results).to_have_count(3)
    for name in NAMES:
        expect(page.locator(f'#bulk-results li[data-outcome="done"]:has-text("{name} started.")')).to_have_count(1)
        # The live update replaces the row: it shows the new state, and its tick stays.
        row = page.locator(f"#domain-{crew_host}-{UUIDS[name]}")
        expect(row).to_have_attribute("data-state", "running")
        expect(row.get_by_role("checkbox", name=f"Tick {name}")).to_be_checked()

    page.get_by_role("button", name="Apply").click()  # again: each says why it cannot start twice
    expect(page.locator('#bulk-results li[data-outcome="failed"]')).to_have_count(3)
    expect(page.locator("#bulk-results")).to_contain_text("Start is not possible while the machine is running.")


def test_the_audit_log_filters_and_exports_what_it_shows(page: Page, live_app: LiveApp, crew_host: str) -> None:
    login(page, "admin", live_app.admin_password)
    page.goto("/audit/")
    filters = page.locator("#audit-filters")
    filters.get_by_label("Host").fill(crew_host)
    filters.get_by_label("Action").select_option("domain.start")
    filters.get_by_label("Result").select_option("succeeded")
    filters.get_by_role("button", name="Filter").click()

    page.wait_for_url(re.compile(r"action=domain.start"))
    rows = page.locator("table.audit tbody tr")
    expect(rows).to_have_count(3)
    expect(page.locator(".count")).to_have_text("3 entries")
    for name in NAMES:
        expect(rows.filter(has_text=name)).to_have_count(1)

    with page.expect_download() as download:
        page.get_by_role("link", name="Export CSV").click()
    RESULTS_DIR.mkdir(exist_ok=True)
    saved = RESULTS_DIR / "audit-export.csv"
    download.value.save_as(saved)
    header, *entries = list(csv.reader(saved.open(encoding="utf-8")))
    assert header[3:6] == ["Action", "Host", "VM"]
    assert sorted(entry[5] for entry in entries) == list(NAMES)
    assert {(entry[3], entry[4], entry[7]) for entry in entries} == {("domain.start", crew_host, "succeeded")}
