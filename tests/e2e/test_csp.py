"""The Content-Security-Policy in Debian's Chromium: the pages, both consoles and the admin site run under it.

A violation shows as a `securitypolicyviolation` event in the page and a console message; either fails a
test. The portal runs as `bin/run` runs it, the console proxy on another port of the page's host
(VMPORTAL_CONSOLE_URL=":PORT/websockify"), so the policy's connect-src must name that port.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import BrowserContext, expect

import lab
from tests.e2e.conftest import Violations, console_portal, login
from tests.integration.helpers import host_of, virsh
from tests.support.consoles import ConsoleStack

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

USER, ADMIN = "csp-tina", "csp-alice"


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory, hosts: list[lab.LabHost]) -> Iterator[ConsoleStack]:
    with console_portal(tmp_path_factory.mktemp("csp-e2e"), hosts, {USER: ("demo-vga", "demo-spice")},
                        admins=(ADMIN,)) as stack:
        yield stack


def test_an_inline_script_is_blocked_and_noticed(context: BrowserContext) -> None:
    """The tests below can fail: the browser enforces the policy and the recorder sees it."""
    violations = Violations(context)
    page = context.new_page()
    page.goto("/accounts/login/")
    page.evaluate("""() => { const s = document.createElement("script");
                             s.textContent = "window.ranInline = true"; document.body.append(s); }""")
    page.wait_for_function("window.__cspViolations.length > 0")
    assert page.evaluate("window.ranInline") is None
    assert any("script-src" in violation for violation in violations.of(page))


def test_the_list_a_vm_page_and_both_consoles_run_without_a_violation(context: BrowserContext,
                                                                      hosts: list[lab.LabHost]) -> None:
    violations = Violations(context)
    page = context.new_page()
    login(page, USER)
    expect(page.locator("#live-indicator")).to_have_attribute("data-live", "on")  # the live websocket
    page.locator("#id_q").fill("demo")  # an htmx request and swap
    page.wait_for_url(re.compile(r"q=demo"))
    for name in ("demo-vga", "demo-spice"):
        host = host_of(hosts, name)
        page.goto(f"/domains/{host.name}/{virsh(host, 'domuuid', name)}/")
        expect(page.locator("#live-indicator")).to_have_attribute("data-live", "on")
        with context.expect_page() as opened:
            page.locator("a[data-action=console]").click()
        console = opened.value
        expect(console.locator("#console-state")).to_have_attribute("data-state", "connected")
        console.wait_for_timeout(1000)  # the first frames, the cursor
        assert violations.of(console) == [], name
        console.close()
    assert violations.of(page) == []


def test_the_admin_site_runs_without_a_violation(context: BrowserContext, portal: ConsoleStack) -> None:
    violations = Violations(context)
    page = context.new_page()
    login(page, ADMIN)
    user_id = portal.shell(f"from accounts.models import User\nresult = User.objects.get(username={USER!r}).pk\n")
    for path in ("/admin/", f"/admin/accounts/user/{user_id}/change/", "/admin/domains/grant/add/"):
        page.goto(path)
        page.wait_for_load_state("load")
        assert violations.of(page) == [], path
    # The change form's scripts work: the group filter widget is built by admin/js/SelectFilter2.js.
    page.goto(f"/admin/accounts/user/{user_id}/change/")
    expect(page.locator("#id_groups_filter")).to_be_visible()
    assert violations.of(page) == []
