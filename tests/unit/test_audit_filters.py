"""The audit page's filters, search, paging and CSV export, each within what its reader may see."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from django.utils import timezone

from accounts.models import User
from audit.models import AuditEntry
from audit.services import record
from domains.models import Host
from tests.conftest import client_for
from tests.support.streaming import read_all

Result = AuditEntry.Result
WEB_UUID = "a1f0c0de-0000-4000-8000-000000000001"
PATH = "/var/lib/libvirt/images/secret-disk.qcow2"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def history(admin_user: User, tenant_user: User, other_tenant_user: User, embedded_host: Host) -> None:
    record(actor=tenant_user, action="domain.start", result=Result.SUCCEEDED, message="web-01 started.",
           host=embedded_host, domain_uuid=WEB_UUID, domain_name="web-01")
    record(actor=tenant_user, action="domain.pause", result=Result.FAILED, host=embedded_host,
           message=f"could not open {PATH}", domain_uuid=WEB_UUID, domain_name="web-01")
    record(actor=other_tenant_user, action="domain.start", result=Result.DENIED, message="refused",
           host=embedded_host, domain_name="=HYPERLINK(\"http://evil\")")
    old = record(actor=admin_user, action="host.register", result=Result.SUCCEEDED, message="lab2")
    AuditEntry.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=3))


def actions_shown(user: User, query: str) -> list[str]:
    response = client_for(user).get(f"/audit/?{query}")
    assert response.status_code == 200, response.content.decode()[:300]
    return [entry.action for entry in response.context["page"]]


@pytest.mark.parametrize(("query", "expected"), [
    ("actor=tina", ["domain.pause", "domain.start"]),
    ("vm=web", ["domain.pause", "domain.start"]),
    (f"vm={WEB_UUID}", ["domain.pause", "domain.start"]),
    ("host=embed", ["domain.start", "domain.pause", "domain.start"]),
    ("action=host.register", ["host.register"]),
    ("result=denied", ["domain.start"]),
    ("text=started", ["domain.start"]),
    ("text=secret-disk", ["domain.pause"]),  # admins read (and search) the whole message
    ("actor=tina&result=failed", ["domain.pause"]),
])
def test_each_filter_narrows_the_log(admin_user: User, history: None, query: str, expected: list[str]):
    assert actions_shown(admin_user, query) == expected


def test_a_time_range_keeps_what_happened_within_it(admin_user: User, history: None):
    now = timezone.localtime()
    two_days_ago = (now - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
    assert "host.register" not in actions_shown(admin_user, f"since={two_days_ago}")
    assert actions_shown(admin_user, f"until={two_days_ago}") == ["host.register"]


def test_a_time_range_backwards_is_said_in_words(admin_user: User, history: None):
    response = client_for(admin_user).get("/audit/?since=2026-05-02T10:00&until=2026-05-01T10:00")
    assert response.status_code == 400
    assert "The end of the time range comes before its start." in response.content.decode()
    assert 'value="2026-05-02T10:00"' in response.content.decode()  # what was typed stays


def test_a_tenant_filters_only_its_own_entries(tenant_user: User, history: None):
    assert actions_shown(tenant_user, "action=domain.start") == ["domain.start"]
    assert actions_shown(tenant_user, "actor=otto") == []
    # Another user's action is not even a choice.
    response = client_for(tenant_user).get("/audit/?action=host.register")
    assert response.status_code == 400
    assert "Select a valid choice. host.register is not one of the available choices." in response.content.decode()


def test_a_tenant_cannot_find_its_rows_by_what_redaction_hides(tenant_user: User, history: None):
    assert actions_shown(tenant_user, "text=secret-disk") == []
    assert actions_shown(tenant_user, "text=could not open") == ["domain.pause"]


def test_paging_keeps_the_filters(admin_user: User, embedded_host: Host):
    for number in range(105):
        record(actor=admin_user, action="domain.start", result=Result.SUCCEEDED, message=f"{number}")
    record(actor=admin_user, action="domain.pause", result=Result.SUCCEEDED, message="other")
    body = client_for(admin_user).get("/audit/?action=domain.start").content.decode()
    assert "page 1 of 2" in body
    assert 'href="?action=domain.start&amp;page=2">older</a>' in body
    assert len(actions_shown(admin_user, "action=domain.start&page=2")) == 5


def test_a_long_message_is_clamped_in_its_cell_and_whole_in_its_title(admin_user: User):
    long = "ticket " + " ".join(f"{index:064x}" for index in range(8))
    record(actor=admin_user, action="console.open", result=Result.SUCCEEDED, message=long)
    body = client_for(admin_user).get("/audit/").content.decode()
    assert f'<td class="audit-message"><span class="clamp" title="{long}">{long}</span></td>' in body


def export(user: User, query: str = "") -> list[list[str]]:
    response = client_for(user).get(f"/audit/export.csv?{query}")
    assert response.status_code == 200
    assert response.streaming and response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="audit.csv"'
    return list(csv.reader(io.StringIO(read_all(response.streaming_content).decode())))  # type: ignore[attr-defined]


def test_the_csv_holds_the_filtered_entries_of_every_page(admin_user: User, history: None):
    header, *rows = export(admin_user, "host=embedded&page=2")
    assert header[:4] == ["When", "Who", "API token", "Action"]
    assert [row[3] for row in rows] == ["domain.start", "domain.pause", "domain.start"]
    assert PATH in rows[1][8]


def test_a_vm_name_that_looks_like_a_formula_stays_text_in_the_csv(admin_user: User, history: None):
    [_header, row] = export(admin_user, "result=denied")
    assert row[5] == "'=HYPERLINK(\"http://evil\")"


def test_a_tenant_exports_its_own_entries_as_it_reads_them(tenant_user: User, history: None):
    _header, *rows = export(tenant_user)
    assert {row[1] for row in rows} == {"tina-tenant"}
    assert [row[8] for row in rows] == ["could not open [host path]", "web-01 started."]


def test_the_export_link_carries_the_filters(admin_user: User, history: None):
    body = client_for(admin_user).get("/audit/?result=failed&page=1").content.decode()
    assert 'href="/audit/export.csv?result=failed"' in body


def test_anonymous_is_sent_to_log_in_for_the_export(db: None):
    assert client_for(None).get("/audit/export.csv")["Location"].startswith("/accounts/login/")


def test_a_long_export_is_sent_in_batches_not_read_whole_first(admin_user: User):
    AuditEntry.objects.bulk_create(AuditEntry(actor=admin_user, actor_name=admin_user.username, action="domain.start",
                                              result=Result.SUCCEEDED) for _ in range(600))
    response = client_for(admin_user).get("/audit/export.csv")

    async def batches() -> list[bytes]:
        return [batch async for batch in response.streaming_content]  # type: ignore[attr-defined]

    sent = async_to_sync(batches)()
    assert len(sent) == 2  # the heading and 499 rows, then the other 101
    assert b"".join(sent).count(b"domain.start") == 600
