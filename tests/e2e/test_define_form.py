"""The define form in Chromium: it shows only the chosen boot source's and graphics server's fields, and says
a name is taken before the form is sent."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import RESULTS_DIR, LabHost, LiveApp, Violations, login

pytestmark = pytest.mark.e2e


def test_the_form_shows_the_chosen_sources_fields_and_reports_a_taken_name_before_submit(
    page: Page, live_app: LiveApp, lab_host: LabHost
) -> None:
    violations = Violations(page.context)
    login(page, "admin", live_app.admin_password)
    page.goto(f"/domains/new/?host={lab_host.name}")
    volume, size, kernel, tls_port = (page.locator(f"#id_{name}") for name in ("volume", "size_gib", "kernel",
                                                                               "tls_port"))
    # A new empty volume (the default): its size, no volume to pick, no kernel.
    expect(size).to_be_visible()
    expect(volume).to_be_hidden()
    expect(kernel).to_be_hidden()
    page.select_option("#id_boot_kind", "iso")
    expect(volume).to_be_visible()
    expect(kernel).to_be_hidden()
    page.select_option("#id_boot_kind", "kernel")
    expect(kernel).to_be_visible()
    expect(volume).to_be_hidden()
    expect(tls_port).to_be_hidden()  # VNC by default: SPICE's TLS port has no use
    page.select_option("#id_graphics", "spice")
    expect(tls_port).to_be_visible()

    taken = next(iter(lab_host.uuids))
    with page.expect_response(lambda response: "check=1" in response.url):
        page.fill("#id_name", taken)
    errors = page.locator("#id_name-errors")
    expect(errors).to_have_text(f"A machine named {taken} already exists on this host.")
    page.fill("#id_memory_mib", "1000000")
    expect(page.locator("#id_memory_mib-errors")).to_contain_text("MiB of memory in all: give the machine less.")
    page.fill("#id_name", "brand-new")
    expect(errors).to_have_text("")
    assert page.url.endswith(f"/domains/new/?host={lab_host.name}"), "nothing was sent"
    RESULTS_DIR.mkdir(exist_ok=True)
    page.screenshot(path=str(RESULTS_DIR / "define-form.png"), full_page=True)
    assert violations.of(page) == []
