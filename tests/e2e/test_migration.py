"""Migrating from the browser: the form, a progress bar that moves, and the row that changes host."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

import lab
from tests.conftest import LAB_HOSTS
from tests.e2e.conftest import LiveApp, login
from tests.integration.helpers import agent_answers, domains, virsh, wait_until
from tests.integration.test_migration_lab import define, remove_leftovers

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

NAME = "it-mig-e2e"


@pytest.fixture(scope="module")
def lab_pair(live_app: LiveApp, lab_session: None) -> Iterator[tuple[lab.LabHost, lab.LabHost]]:
    """The two lab hosts, registered as mig-a and mig-b for this module and removed afterwards."""
    hosts = lab.up(hosts=LAB_HOSTS)
    for lab_host in hosts:
        remove_leftovers(lab_host)
    live_app.manage("hosts", "add", "mig-a", hosts[0].uri)
    live_app.manage("hosts", "add", "mig-b", hosts[1].uri)
    yield hosts[0], hosts[1]
    live_app.manage("hosts", "remove", "mig-a")
    live_app.manage("hosts", "remove", "mig-b")
    for lab_host in hosts:
        remove_leftovers(lab_host)


def test_the_form_starts_a_migration_whose_progress_and_new_host_appear_live(
        page: Page, live_app: LiveApp, lab_pair: tuple[lab.LabHost, lab.LabHost]) -> None:
    lab1, lab2 = lab_pair
    uuid = define(lab1, NAME, start=True)
    login(page, "admin", live_app.admin_password)
    listing = page.context.new_page()
    listing.goto("/domains/?all&host=")
    source_row, destination_row = listing.locator(f"#domain-mig-a-{uuid}"), listing.locator(f"#domain-mig-b-{uuid}")
    expect(source_row).to_have_attribute("data-state", "running")
    expect(destination_row).to_have_count(0)
    expect(listing.locator("#live-indicator")).to_have_attribute("data-live", "on")
    listing.evaluate("window.__marker = 1")

    page.goto(f"/domains/mig-a/{uuid}/")
    page.locator('a[data-action="migrate"]').click()
    page.locator('input[name="bandwidth_mib"]').fill("16")  # about six seconds for the guest's memory
    page.locator('input[name="destination"][value="mig-b"]').check()  # the pre-checks come in for mig-b
    expect(page.locator('#checks li[data-check="memory"]')).to_have_class("check check-ok")
    submit = page.locator("#migrate-submit")
    expect(submit).to_be_enabled()
    # A booted guest has a known amount of memory in use, so the move lasts long enough to watch.
    wait_until(lambda: agent_answers(lab1, NAME), timeout=120, what="the guest's agent")
    submit.click()
    page.wait_for_url("**/migrations/*/")
    expect(page.locator("#live-indicator")).to_have_attribute("data-live", "on")
    # Every value the bar takes, as the page receives it (polling from here could miss some).
    page.evaluate("""() => {
        window.__progress = new Set();
        const note = () => {
            const bar = document.querySelector("section.migration progress");
            if (bar && bar.hasAttribute("value")) window.__progress.add(Number(bar.getAttribute("value")));
        };
        note();
        new MutationObserver(note).observe(document.body, {subtree: true, childList: true, attributes: true});
    }""")

    expect(page.locator("section.migration")).to_have_attribute("data-state", "succeeded", timeout=120_000)
    seen = sorted(page.evaluate("[...window.__progress]"))
    assert len([value for value in seen if 0 < value < 100]) >= 2, f"the bar did not move: {seen}"
    expect(page.locator("section.migration .migration-downtime")).to_contain_text(" ms")

    # The open list, never reloaded, moved the VM: the row on mig-a left, one on mig-b runs.
    expect(destination_row).to_have_attribute("data-state", "running", timeout=20_000)
    expect(source_row).to_have_count(0, timeout=20_000)
    assert listing.evaluate("window.__marker") == 1, "the list was reloaded"
    assert NAME in domains(lab2, active_only=True) and NAME not in domains(lab1)
    assert virsh(lab2, "domstate", NAME) == "running"
