"""The audit page: who sees which entries, what an entry shows, and that guest text is escaped."""

from __future__ import annotations

import re
from collections.abc import Callable

import libvirt
import pytest
from django.utils.html import escape

from accounts.models import User
from audit import services as audit
from audit.models import AuditEntry
from domains import services
from domains.models import Grant, Host
from domains.virt.connections import translate
from tests.conftest import TEST_DOMAIN_UUID, client_for
from tests.unit.test_virt_errors import KERNEL, libvirt_error

SCRIPT = "<script>alert(1)</script>"
EVIL_NAME = "evil\"><img src=x onerror=alert(2)>"  # breaks out of an attribute; libvirt refuses only "/"
EVIL_UUID = "e0e0e0e0-0000-4000-8000-000000000001"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def audit_rows(user: User) -> list[list[str]]:
    """The audit table as the user sees it: the text of each cell, row by row."""
    response = client_for(user).get("/audit/")
    assert response.status_code == 200
    body = response.content.decode()
    tbody = body[body.index("<tbody>"):body.index("</tbody>")]
    return [
        [re.sub(r"<[^>]+>", "", cell).strip()
         for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        for row in re.findall(r"<tr[^>]*>(.*?)</tr>", tbody, re.S)
    ]


@pytest.fixture
def history(admin_user: User, tenant_user: User, other_tenant_user: User, embedded_host: Host) -> None:
    """One admin action that worked, and one refused attempt by each tenant."""
    services.host_update(actor=admin_user, host=embedded_host, uri="test:///default", enabled=True,
                         client_addr="127.0.0.2")
    for tenant in (tenant_user, other_tenant_user):
        client_for(tenant).post("/hosts/embedded/delete/", REMOTE_ADDR="127.0.0.3")


def test_admin_sees_every_entry_with_actor_action_host_and_result(admin_user: User, history: None):
    rows = audit_rows(admin_user)
    seen = {(row[1], row[2], row[3], row[5]) for row in rows}
    assert seen == {
        ("alice-admin", "host.update", "embedded", "Succeeded"),
        ("tina-tenant", "host.delete", "embedded", "Denied"),
        ("otto-other", "host.delete", "embedded", "Denied"),
    }
    admin_row = next(row for row in rows if row[1] == "alice-admin")
    assert admin_row[7] == "127.0.0.2"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", admin_row[0])


def test_a_tenant_sees_only_its_own_entries(tenant_user: User, history: None):
    rows = audit_rows(tenant_user)
    assert [(row[1], row[2], row[5]) for row in rows] == [("tina-tenant", "host.delete", "Denied")]


def test_an_operator_sees_only_its_own_entries(operator_user: User, history: None):
    assert audit_rows(operator_user) == [["Nothing recorded yet."]]


def test_entries_are_newest_first(admin_user: User, embedded_host: Host):
    for enabled in (False, True):
        services.host_update(actor=admin_user, host=embedded_host, uri="test:///default", enabled=enabled)
    services.host_delete(actor=admin_user, host=embedded_host)
    assert [row[2] for row in audit_rows(admin_user)] == ["host.delete", "host.update", "host.update"]


def test_a_vm_action_shows_the_vm_and_its_uuid(tenant_user: User, tenant_grant: Grant):
    client_for(tenant_user).post(f"/domains/embedded/{TEST_DOMAIN_UUID}/action/", {"action": "pause"})
    [row] = audit_rows(tenant_user)
    assert row[2:4] == ["domain.pause", "embedded"]
    assert row[4] == f"test {TEST_DOMAIN_UUID}"
    assert row[5] == "Succeeded"


@pytest.fixture
def evil_host(xml_host: Callable[..., Host]) -> Host:
    """A host whose guest chose a name and a title that are HTML."""
    return xml_host("evilhost", [{"name": EVIL_NAME, "uuid": EVIL_UUID, "title": SCRIPT}])


@pytest.mark.parametrize("query", ["all", "all&title", "all&name&title"])
def test_guest_title_and_name_are_escaped_in_the_list(admin_user: User, evil_host: Host, query: str):
    body = client_for(admin_user).get(f"/domains/?{query}").content.decode()
    assert escape(SCRIPT) in body
    assert SCRIPT not in body
    assert EVIL_NAME not in body
    assert escape(EVIL_NAME) in body


def test_guest_title_and_name_are_escaped_on_the_vm_page(admin_user: User, evil_host: Host):
    response = client_for(admin_user).get(f"/domains/evilhost/{EVIL_UUID}/")
    assert response.status_code == 200
    body = response.content.decode()
    assert escape(SCRIPT) in body
    assert SCRIPT not in body and EVIL_NAME not in body


def test_guest_title_in_json_is_data_not_markup(admin_user: User, evil_host: Host):
    response = client_for(admin_user).get("/domains/", {"all": "", "format": "json"})
    assert response["Content-Type"] == "application/json"
    [row] = response.json()["domains"]
    assert (row["name"], row["title"]) == (EVIL_NAME, SCRIPT)


def test_guest_names_are_escaped_in_the_audit_log(admin_user: User, evil_host: Host):
    client_for(admin_user).post(f"/domains/evilhost/{EVIL_UUID}/action/", {"action": "pause"})
    assert AuditEntry.objects.get(action="domain.pause").domain_name == EVIL_NAME
    body = client_for(admin_user).get("/audit/").content.decode()
    assert escape(EVIL_NAME) in body
    assert EVIL_NAME not in body


def test_stored_audit_text_is_escaped(admin_user: User):
    audit.record(actor=admin_user, actor_name=SCRIPT, action="host.test", host_name="h", domain_name=SCRIPT,
                 message=SCRIPT, result=AuditEntry.Result.FAILED)
    body = client_for(admin_user).get("/audit/").content.decode()
    assert SCRIPT not in body
    assert body.count(escape(SCRIPT)) == 4  # the message twice: in its cell and whole in the cell's title


# --- A failed action: the row keeps libvirt's message; the page shows it as its reader may read it ---

KERNEL_PATH = "/var/lib/vmportal-lab/shared/vmlinuz-gone"


@pytest.fixture
def kernel_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Acting fails as QEMU does when a direct-boot kernel is gone (the message measured on the lab)."""
    def fail(*_: object) -> None:
        raise translate(libvirt_error(libvirt.VIR_ERR_INTERNAL_ERROR, libvirt.VIR_FROM_QEMU, KERNEL))

    monkeypatch.setattr("domains.services.virt.run_action", fail)


def test_a_failed_action_keeps_libvirts_message_and_only_admins_read_its_paths(
        admin_user: User, tenant_user: User, tenant_grant: Grant, kernel_missing: None):
    page = client_for(tenant_user).post(f"/domains/embedded/{TEST_DOMAIN_UUID}/action/", {"action": "pause"},
                                        follow=True)
    [told] = [str(message) for message in page.context["messages"]]
    assert "could not open kernel file [host path]: No such file or directory" in told
    assert KERNEL_PATH not in told

    entry = AuditEntry.objects.get(action="domain.pause")
    assert entry.result == AuditEntry.Result.FAILED
    assert entry.message == f"The hypervisor could not complete the request. libvirt: {KERNEL}"

    [tenant_row] = audit_rows(tenant_user)
    assert tenant_row[6] == escape(told)
    [admin_row] = audit_rows(admin_user)
    assert admin_row[6] == escape(entry.message)
    assert KERNEL_PATH in admin_row[6]


def test_an_operator_reads_its_own_failures_without_host_paths(operator_user: User, embedded_host: Host,
                                                               kernel_missing: None):
    client_for(operator_user).post(f"/domains/embedded/{TEST_DOMAIN_UUID}/action/", {"action": "pause"})
    [row] = audit_rows(operator_user)
    assert row[5] == "Failed"
    assert "could not open kernel file [host path]" in row[6]
    assert KERNEL_PATH not in row[6]
