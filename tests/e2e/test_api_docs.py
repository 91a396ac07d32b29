"""The API's docs page in Chromium under the site's Content-Security-Policy, and a token made on the tokens page
answering a script's call."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import LiveApp, Violations, login

pytestmark = pytest.mark.e2e


def test_the_docs_render_under_the_csp_and_try_a_call_with_the_session(page: Page, live_app: LiveApp) -> None:
    violations = Violations(page.context)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    login(page, "admin", live_app.admin_password)

    page.goto("/accounts/tokens/")
    page.fill("#id_name", "e2e")
    page.get_by_role("button", name="Create token").click()
    token = page.locator("#new-token").inner_text()
    assert token.startswith("vmp_")
    page.reload()
    expect(page.locator("#new-token")).to_have_count(0)  # shown once
    answer = page.evaluate("""token => fetch("/api/v1/domains/?all", {headers: {Authorization: `Bearer ${token}`},
                                                                     credentials: "omit"})
                                   .then(response => response.json().then(body => [response.status, body.count]))""",
                           token)
    assert answer[0] == 200 and answer[1] >= 0

    page.goto("/api/docs/")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("vmportal API")
    operation = page.locator("#operations-hosts-hosts_list")
    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()
    with page.expect_response(lambda response: response.url.endswith("/api/v1/hosts/")) as called:
        operation.get_by_role("button", name="Execute").click()
    assert called.value.status == 200  # the session's cookie, as the docs page sends it
    expect(operation.locator(".live-responses-table tbody .response-col_status").first).to_contain_text("200")

    assert errors == []
    assert violations.of(page) == []
