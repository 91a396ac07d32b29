"""The hardware page's forms in Chromium: reached from the VM's page, memory and vCPUs of a shut-off VM
changed, a bad value refused with its field error and the typed values kept, and the boot order set."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import LiveApp, Violations, inventory_host, login

pytestmark = pytest.mark.e2e

VM_UUID = "0a0b0c0d-0000-4000-8000-00000000e2e5"
INVENTORY = f"""<node>
  <domain type='test'>
    <name>hw-01</name><uuid>{VM_UUID}</uuid><memory unit='MiB'>256</memory><vcpu>1</vcpu>
    <os><type>hvm</type><boot dev='hd'/></os>
  </domain>
</node>
"""


@pytest.fixture(scope="module")
def hardware_host(live_app: LiveApp, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with inventory_host(live_app, tmp_path_factory.mktemp("hardware"), "hardware-xml", INVENTORY) as host:
        yield host


def submit(page: Page, change: str, fields: dict[str, str]) -> None:
    form = page.locator(f"#change-{change} form")
    for name, value in fields.items():
        field = form.locator(f'[name="{change}-{name}"]')
        if field.evaluate("element => element.tagName") == "SELECT":
            field.select_option(value)
        else:
            field.fill(value)
    form.locator('button[type="submit"]').click()
    page.wait_for_load_state()


def test_the_hardware_page_s_forms_change_a_shut_off_vm_and_refuse_bad_values(
    page: Page, live_app: LiveApp, hardware_host: str
) -> None:
    violations = Violations(page.context)
    login(page, "admin", live_app.admin_password)
    page.goto(f"/domains/{hardware_host}/{VM_UUID}/")
    page.locator('a[data-action="hardware"]').click()
    expect(page.locator("h1")).to_contain_text("Hardware of hw-01")

    submit(page, "memory", {"memory_mib": "512", "max_memory_mib": "1024"})
    expect(page.locator("#messages")).to_contain_text("hw-01 has 512 MiB of memory from the next boot.")
    expect(page.locator("#hardware-summary tr.memory")).to_contain_text("512 MiB of at most 1024 MiB")

    submit(page, "vcpus", {"vcpus": "2"})
    expect(page.locator("#messages")).to_contain_text("hw-01 has 2 vCPUs from the next boot.")
    expect(page.locator("#hardware-summary tr.vcpus")).to_contain_text("2 of at most 2")

    # The browser checks each number's range itself; the server, how they fit together.
    submit(page, "memory", {"memory_mib": "768", "max_memory_mib": "640"})
    memory_form = page.locator("#change-memory")
    expect(memory_form).to_contain_text("The maximum cannot be below the amount itself.")
    expect(memory_form.locator('[name="memory-memory_mib"]')).to_have_value("768")
    expect(memory_form.locator('[name="memory-max_memory_mib"]')).to_have_value("640")
    expect(page.locator("#hardware-summary tr.memory")).to_contain_text("512 MiB of at most 1024 MiB")

    submit(page, "boot-order", {"first": "cdrom", "second": "hd"})
    expect(page.locator("#messages")).to_contain_text("hw-01 boots from cdrom, hd from the next boot.")
    expect(page.locator("#hardware-summary tr.boot")).to_contain_text("cdrom, hd")
    assert violations.of(page) == []
