"""Live state in Chromium: what virsh does on a real lab host shows in the open list, without a reload.

The server is the session's daphne (tests/e2e/conftest.py), in its default mode: the in-memory
layer, the watchers started by the first live page. The guests are the tests' own transient ones,
so no other test's VM changes under them: one with nothing to boot, and the lab's own guest where
the agent's addresses matter.
"""

from __future__ import annotations

import secrets
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

import lab
from tests.conftest import LAB_HOSTS
from tests.e2e.conftest import LiveApp, login
from tests.integration.helpers import virsh
from tests.integration.test_migration_lab import guest_xml

pytestmark = pytest.mark.e2e

LIVE_MS = 5_000  # the page must show a change within this, without reload (it takes milliseconds)


@pytest.fixture(scope="module")
def lab1(lab_session: None) -> lab.LabHost:
    return lab.up(hosts=LAB_HOSTS)[0]


@pytest.fixture(scope="module")
def live_host(live_app: LiveApp, lab1: lab.LabHost) -> Iterator[str]:
    """lab1 registered for this module, removed afterwards so other modules' lists never see it."""
    name = "live-lab1"
    live_app.manage("hosts", "add", name, lab1.uri)
    yield name
    live_app.manage("hosts", "remove", name)


def start_guest(lab1: lab.LabHost, directory: Path, name: str) -> str:
    """A running transient guest of 32 MiB on lab1, with nothing to boot; its UUID. It is gone once it stops."""
    domain_uuid = str(uuid.uuid4())
    xml = directory / f"{name}.xml"
    xml.write_text(
        f"<domain type='kvm'><name>{name}</name><uuid>{domain_uuid}</uuid><memory unit='MiB'>32</memory>"
        "<vcpu>1</vcpu><os><type arch='x86_64' machine='pc'>hvm</type></os>"
        "<devices><emulator>/usr/bin/qemu-system-x86_64</emulator></devices></domain>"
    )
    virsh(lab1, "create", str(xml))
    return domain_uuid


def destroy_guest(lab1: lab.LabHost, name: str) -> None:
    subprocess.run(["virsh", "--connect", lab1.uri, "destroy", name], capture_output=True, timeout=60, check=False)


@pytest.fixture
def guest(lab1: lab.LabHost, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A running transient guest on lab1: (name, uuid)."""
    name = f"live-e2e-{secrets.token_hex(3)}"
    domain_uuid = start_guest(lab1, tmp_path, name)
    yield name, domain_uuid
    destroy_guest(lab1, name)


def test_a_row_leaving_a_page_brings_the_next_page_s_first_in_place(
    page: Page, live_app: LiveApp, lab1: lab.LabHost, live_host: str, tmp_path: Path
) -> None:
    """A page of a longer list (one row a page, by name): the row that leaves the view is replaced by the
    one from the next page, and comes back in its sorted place, with the count and pager following."""
    tag = secrets.token_hex(3)
    names = [f"paged-{tag}-a", f"paged-{tag}-b"]
    uuids = [start_guest(lab1, tmp_path, name) for name in names]
    try:
        login(page, live_app.create_user(f"olga-pages-{tag}", role="operator"))
        page.goto(f"/domains/?state-running&host={live_host}&q=paged-{tag}&sort=name&per_page=1")
        expect(page.locator("#live-indicator")).to_have_attribute("data-live", "on")
        rows = page.locator("#results tbody tr[data-name]")
        count = page.locator("#list-footer .count")
        expect(rows).to_have_count(1)
        expect(page.locator(f"#domain-{live_host}-{uuids[0]}")).to_have_count(1)
        expect(count).to_have_text("1–1 of 2 virtual machines")
        expect(page.locator("#list-footer a[rel=next]")).to_have_count(1)
        page.evaluate("window.__marker = 1")

        virsh(lab1, "suspend", names[0])  # leaves the running view: page 1 now holds the second
        expect(page.locator(f"#domain-{live_host}-{uuids[1]}")).to_have_count(1, timeout=LIVE_MS)
        expect(rows).to_have_count(1)
        expect(count).to_have_text("1 virtual machine")
        expect(page.locator("#list-footer a[rel=next]")).to_have_count(0)

        virsh(lab1, "resume", names[0])  # back, and first by name
        expect(page.locator(f"#domain-{live_host}-{uuids[0]}")).to_have_count(1, timeout=LIVE_MS)
        expect(rows).to_have_count(1)
        expect(count).to_have_text("1–1 of 2 virtual machines")
        assert page.evaluate("window.__marker") == 1, "the page was reloaded"
    finally:
        for name in names:
            destroy_guest(lab1, name)


def test_virsh_suspend_shows_paused_in_the_open_list_without_reload(
    page: Page, live_app: LiveApp, lab1: lab.LabHost, live_host: str, guest: tuple[str, str]
) -> None:
    name, domain_uuid = guest
    login(page, live_app.create_user(f"olga-live-{secrets.token_hex(2)}", role="operator"))
    page.goto(f"/domains/?all&host={live_host}")
    row = page.locator(f"#domain-{live_host}-{domain_uuid}")
    expect(row.locator(".state")).to_have_text("running")
    expect(page.locator("#live-indicator")).to_have_attribute("data-live", "on")
    page.evaluate("window.__marker = 1")

    virsh(lab1, "suspend", name)
    expect(row.locator(".state")).to_have_text("paused", timeout=LIVE_MS)
    expect(row).to_have_attribute("data-state", "paused")
    # The offered actions changed with the state: the same row the server renders.
    expect(row.locator("button[data-action='resume']")).to_have_count(1)
    expect(row.locator("button[data-action='pause']")).to_have_count(0)

    virsh(lab1, "resume", name)
    expect(row.locator(".state")).to_have_text("running", timeout=LIVE_MS)
    assert page.evaluate("window.__marker") == 1, "the page was reloaded"


def test_a_filtered_list_gains_and_loses_vms_in_sorted_place(
    page: Page, live_app: LiveApp, lab1: lab.LabHost, live_host: str, guest: tuple[str, str]
) -> None:
    name, domain_uuid = guest
    login(page, live_app.create_user(f"olga-filter-{secrets.token_hex(2)}", role="operator"))
    page.goto(f"/domains/?state-paused&host={live_host}")
    expect(page.locator("#live-indicator")).to_have_attribute("data-live", "on")
    rows = page.locator("#results tbody tr[data-name]")
    row = page.locator(f"#domain-{live_host}-{domain_uuid}")
    expect(row).to_have_count(0)
    page.evaluate("window.__marker = 1")

    virsh(lab1, "suspend", name)
    expect(row).to_have_count(1, timeout=LIVE_MS)
    names = rows.evaluate_all("rows => rows.map(row => row.dataset.name)")
    assert names == sorted(names) and name in names

    virsh(lab1, "resume", name)  # no longer paused: it leaves this view
    expect(row).to_have_count(0, timeout=LIVE_MS)
    assert page.evaluate("window.__marker") == 1, "the page was reloaded"


def test_a_guest_s_address_appears_in_the_open_list_once_its_agent_reports_it(
    page: Page, live_app: LiveApp, lab1: lab.LabHost, live_host: str, tmp_path: Path
) -> None:
    """Nobody opens the agent panel: the watcher asks the agent that connected, and pushes the row."""
    name = f"live-addr-{secrets.token_hex(3)}"
    xml = tmp_path / "guest.xml"
    xml.write_text(guest_xml(name))  # the lab's guest: a kernel, an agent, DHCP on user networking
    login(page, live_app.create_user(f"olga-addr-{secrets.token_hex(2)}", role="operator"))
    page.goto(f"/domains/?all&host={live_host}")
    expect(page.locator("#live-indicator")).to_have_attribute("data-live", "on")
    page.evaluate("window.__marker = 1")
    virsh(lab1, "create", str(xml))
    try:
        row = page.locator(f"#results tr[data-name='{name}']")
        expect(row).to_have_attribute("data-state", "running", timeout=LIVE_MS)
        expect(row.locator(".addresses")).to_contain_text("10.0.2.15", timeout=120_000)
        assert page.evaluate("window.__marker") == 1, "the page was reloaded"
    finally:
        subprocess.run(["virsh", "--connect", lab1.uri, "destroy", name], capture_output=True, timeout=60, check=False)
    expect(row).to_have_count(0, timeout=LIVE_MS)
