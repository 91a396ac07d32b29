"""Bulk actions on the list's ticked VMs: each through the gate and its own audited service, each outcome in words."""

from __future__ import annotations

import html
import re

import pytest

from accounts.models import User
from audit.models import AuditEntry
from domains.models import Grant, Host
from tests.conftest import TEST_DOMAIN_UUID, client_for

TEST_VM = f"embedded/{TEST_DOMAIN_UUID}"
NOWHERE = "embedded/00000000-0000-4000-8000-000000000000"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def bulk(user: User, action: str, *vms: str, htmx: bool = True) -> tuple[int, list[tuple[str, str, str]]]:
    """The answer's status and its results as the page shows them: (VM, outcome, words)."""
    headers = {"HX-Request": "true"} if htmx else {}
    response = client_for(user).post("/domains/bulk/", {"action": action, "vm": list(vms)}, headers=headers)
    items = re.findall(r'data-outcome="(\w+)">\s*<strong>(.*?)</strong> \([^)]*\):\s*\w+ — (.*?)\s*</li>',
                       response.content.decode(), re.S)
    return response.status_code, [(name, outcome, html.unescape(message)) for outcome, name, message in items]


def audited(user: User) -> list[tuple[str, str]]:
    return list(AuditEntry.objects.filter(actor=user).order_by("pk").values_list("action", "result"))


def test_an_operator_pauses_then_resumes_a_vm_and_each_is_audited(operator_user: User, embedded_host: Host):
    assert bulk(operator_user, "pause", TEST_VM) == (200, [("test", "done", "test paused.")])
    assert bulk(operator_user, "resume", TEST_VM) == (200, [("test", "done", "test resumed.")])
    assert audited(operator_user) == [("domain.pause", "succeeded"), ("domain.resume", "succeeded")]


def test_one_vm_failing_does_not_stop_the_others_and_says_why(admin_user: User, embedded_host: Host):
    status, results = bulk(admin_user, "start", TEST_VM, NOWHERE)
    assert status == 200
    assert results == [
        ("test", "failed", "Start is not possible while the machine is running."),
        ("00000000-0000-4000-8000-000000000000", "refused", "No such virtual machine, or not yours to act on."),
    ]
    assert audited(admin_user) == [("domain.start", "failed"), ("domain.start", "denied")]


def test_a_snapshot_of_each_ticked_vm(tenant_user: User, tenant_grant: Grant):
    status, [(name, outcome, message)] = bulk(tenant_user, "snapshot", TEST_VM)
    assert (status, name, outcome) == (200, "test", "done")
    assert message.startswith("Snapshot bulk-") and message.endswith(" of test created.")
    assert audited(tenant_user) == [("snapshot.create", "succeeded")]


def test_a_vm_another_tenant_may_not_see_is_refused_without_its_name_and_audited(other_tenant_user: User,
                                                                                tenant_grant: Grant):
    status, results = bulk(other_tenant_user, "force-off", TEST_VM)
    assert (status, results) == (200, [(TEST_DOMAIN_UUID, "refused",
                                        "No such virtual machine, or not yours to act on.")])
    assert audited(other_tenant_user) == [("domain.force-off", "denied")]
    rows = client_for(other_tenant_user).get("/domains/", {"all": "", "format": "json"}).json()["domains"]
    assert rows == []


def test_a_view_only_tenant_is_refused_in_words(other_tenant_user: User, embedded_host: Host):
    Grant.objects.create(host=embedded_host, domain_uuid=TEST_DOMAIN_UUID, user=other_tenant_user)
    assert bulk(other_tenant_user, "pause", TEST_VM) == (200, [
        ("test", "refused", "You may view this machine but not act on it.")])
    assert audited(other_tenant_user) == [("domain.pause", "denied")]


@pytest.mark.parametrize(("headers", "status"), [({}, 400), ({"HX-Request": "true"}, 200)])
def test_nothing_ticked_is_said_in_words(admin_user: User, embedded_host: Host, headers: dict[str, str],
                                         status: int):
    """htmx swaps only a 2xx answer into the page, so it gets the words with a 200."""
    response = client_for(admin_user).post("/domains/bulk/", {"action": "start"}, headers=headers)
    assert response.status_code == status
    assert '<p class="message error">Tick the machines to act on first.</p>' in response.content.decode()
    assert not AuditEntry.objects.exists()


@pytest.mark.parametrize(("data", "error"), [
    ({"action": "delete", "vm": TEST_VM}, "Select a valid choice. delete is not one of the available choices."),
    ({"action": "start", "vm": "embedded/not-a-uuid"}, "embedded/not-a-uuid is not a machine of the list."),
])
def test_an_action_or_vm_the_list_never_offers_is_refused(admin_user: User, embedded_host: Host,
                                                          data: dict[str, str], error: str):
    response = client_for(admin_user).post("/domains/bulk/", data)
    assert response.status_code == 400
    assert error in response.content.decode()
    assert not AuditEntry.objects.exists()


def test_without_htmx_the_results_are_a_page_with_a_way_back(admin_user: User, embedded_host: Host):
    response = client_for(admin_user).post("/domains/bulk/", {"action": "pause", "vm": TEST_VM})
    body = response.content.decode()
    assert response.status_code == 200
    assert 'data-outcome="done"' in body and "test paused." in body
    assert 'href="/domains/?all"' in body


def test_the_list_has_a_labelled_checkbox_per_vm_the_user_may_operate(tenant_user: User, tenant_grant: Grant,
                                                                      other_tenant_user: User):
    body = client_for(tenant_user).get("/domains/?all").content.decode()
    assert (f'<input type="checkbox" name="vm" value="{TEST_VM}" form="bulk-form" aria-label="Tick test">'
            in body)
    assert 'id="bulk-form"' in body and "data-bulk-all" in body
    Grant.objects.create(host=tenant_grant.host, domain_uuid=TEST_DOMAIN_UUID, user=other_tenant_user)
    assert 'name="vm"' not in client_for(other_tenant_user).get("/domains/?all").content.decode()  # view only
