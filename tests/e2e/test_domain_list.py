"""The domain list in a real browser: log in, filter with the checkboxes, see only what one may see.

The rows come from the lab-xml host (tests/e2e/lab-inventory.xml): web-01 running, db-01 paused,
batch-01 paused and transient, old-01 shut off, saved-01 shut off with a managed save image.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import PASSWORD, LabHost, LiveApp, login

pytestmark = pytest.mark.e2e

OPERATOR = "olga-operator"
TENANT_WITHOUT_GRANTS = "tom-tenant"
TENANT_WITH_ONE_GRANT = "tess-tenant"
ACTIVE = ["batch-01", "db-01", "web-01"]  # what `virsh list` shows without options: running and paused


@pytest.fixture(scope="module", autouse=True)
def people(live_app: LiveApp, lab_host: LabHost) -> None:
    live_app.create_users([
        (OPERATOR, PASSWORD, "operator"),
        (TENANT_WITHOUT_GRANTS, PASSWORD, "tenant"),
        (TENANT_WITH_ONE_GRANT, PASSWORD, "tenant"),
    ])
    live_app.grant(username=TENANT_WITH_ONE_GRANT, host=lab_host.name, uuid=lab_host.uuids["db-01"])


def row_names(page: Page) -> list[str]:
    return page.locator("#results tbody tr[data-name]").evaluate_all("rows => rows.map(row => row.dataset.name)")


def row_ids(page: Page) -> list[str]:
    return page.locator("#results tbody tr[data-name]").evaluate_all("rows => rows.map(row => row.id)")


def check_option(page: Page, option: str) -> None:
    """Tick one virsh option as a user does and wait until htmx has swapped in the new #results."""
    page.evaluate("document.getElementById('results').dataset.stale = 'yes'")
    with page.expect_response(lambda response: urlsplit(response.url).path == "/domains/") as answer:
        page.get_by_role("checkbox", name=option, exact=True).check()
    response = answer.value
    assert response.request.headers.get("hx-request") == "true", "the filter did not go through htmx"
    assert response.ok, f"GET {response.url} answered {response.status}"
    # hx-swap="outerHTML" replaces the element, so the mark is gone only once the new results are in.
    page.locator("#results:not([data-stale])").wait_for()


def url_flags(page: Page) -> set[str]:
    """The query parameters in the address bar that carry a value: the ticked checkboxes."""
    return {name for name, value in parse_qsl(urlsplit(page.url).query, keep_blank_values=True) if value}


@pytest.mark.parametrize(
    ("first", "after_first", "second", "after_second"),
    [
        ("all", ["batch-01", "db-01", "old-01", "saved-01", "web-01"], "state-paused", ["batch-01", "db-01"]),
        ("inactive", ["old-01", "saved-01"], "with-managed-save", ["saved-01"]),
    ],
)
def test_checkboxes_filter_the_list_in_place(
    page: Page, lab_host: LabHost, first: str, after_first: list[str], second: str, after_second: list[str],
) -> None:
    login(page, OPERATOR)
    expect(page.get_by_role("heading", name="Virtual machines")).to_be_visible()
    assert row_names(page) == ACTIVE
    page.evaluate("window.__marker = 1")

    check_option(page, first)
    assert row_names(page) == after_first
    check_option(page, second)
    assert row_names(page) == after_second
    assert row_ids(page) == [f"domain-{lab_host.name}-{lab_host.uuids[name]}" for name in after_second]

    assert page.evaluate("window.__marker") == 1, "the page was reloaded instead of swapped by htmx"
    assert urlsplit(page.url).path == "/domains/"
    assert url_flags(page) == {first, second}

    # The pushed address is a real one: loading it again gives the same list, its boxes ticked.
    page.reload()
    assert row_names(page) == after_second
    expect(page.get_by_role("checkbox", name=first, exact=True)).to_be_checked()
    expect(page.get_by_role("checkbox", name=second, exact=True)).to_be_checked()


def test_state_column_says_paused(page: Page) -> None:
    login(page, OPERATOR)
    page.goto("/domains/?all&state-paused")
    expect(page.locator("#results tbody tr[data-name] .state")).to_have_text(["paused", "paused"])


def test_tenant_without_grants_sees_no_vm(page: Page) -> None:
    login(page, TENANT_WITHOUT_GRANTS)
    check_option(page, "all")
    assert row_names(page) == []
    expect(page.locator("#results")).to_contain_text("No virtual machine matches these options.")


def test_tenant_with_one_grant_sees_exactly_that_vm(page: Page, lab_host: LabHost) -> None:
    login(page, TENANT_WITH_ONE_GRANT)
    assert row_names(page) == ["db-01"]
    check_option(page, "all")
    assert row_names(page) == ["db-01"]
    assert row_ids(page) == [f"domain-{lab_host.name}-{lab_host.uuids['db-01']}"]
