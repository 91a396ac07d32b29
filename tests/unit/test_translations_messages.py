"""The words services and the hypervisor layer give people are in the reader's language; the audit log stays in
the site's (English), and the machine values (data-state, JSON, filters) do not move with the language."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import translation

from accounts.models import User
from audit.models import AuditEntry
from domains import services
from domains.models import Host
from tests.conftest import TEST_DOMAIN_UUID, client_for
from tests.support.api import api_test_defaults, bearer  # noqa: F401 - a fixture

URL = f"/domains/embedded/{TEST_DOMAIN_UUID}/"
ROW_TARGET = f"domain-embedded-{TEST_DOMAIN_UUID}"
# Starting test:///default's machine, which already runs: what a Vietnamese reader is told, and what the log keeps.
START_REFUSED_VI = "Không thể thực hiện “Khởi động” khi máy ảo ở trạng thái “đang chạy”."
START_REFUSED_LOGGED = "Start is not possible while the machine is running."


@pytest.fixture
def vietnamese_admin(admin_user: User) -> User:
    admin_user.language = "vi"
    admin_user.save(update_fields=["language"])
    return admin_user


def _act(user: User, action: str) -> str:
    return client_for(user).post(URL + "action/", {"action": action}, HTTP_HX_REQUEST="true",
                                 HTTP_HX_TARGET=ROW_TARGET).content.decode()


def test_a_refused_action_is_told_in_vietnamese_and_audited_in_english(vietnamese_admin: User, embedded_host: Host):
    page = _act(vietnamese_admin, "start")

    assert START_REFUSED_VI in page
    entry = AuditEntry.objects.get(action="domain.start")
    assert (entry.result, entry.message) == (AuditEntry.Result.FAILED, START_REFUSED_LOGGED)


def test_a_done_action_is_told_in_vietnamese_and_audited_in_english(vietnamese_admin: User, embedded_host: Host):
    page = _act(vietnamese_admin, "pause")

    assert "Đã tạm dừng test." in page
    # The row that comes back reads the state and its reason in Vietnamese, and keeps virsh's value for scripts.
    assert 'data-state="paused"' in page
    assert ">đã tạm dừng<" in page and ">người dùng<" in page
    assert AuditEntry.objects.get(action="domain.pause").message == "test paused."


def test_an_api_caller_asking_in_vietnamese_gets_a_vietnamese_problem(admin_user: User, embedded_host: Host):
    url = reverse("api:domain-action", kwargs={"host_name": "embedded", "uuid": TEST_DOMAIN_UUID, "action": "start"})
    problem = bearer(admin_user).post(url, headers={"accept-language": "vi"}).json()

    assert (problem["status"], problem["title"]) == (409, "Xung đột")
    assert problem["detail"] == START_REFUSED_VI
    assert AuditEntry.objects.get(action="domain.start").message == START_REFUSED_LOGGED


def test_a_form_error_is_told_in_vietnamese_and_audited_in_english(admin_user: User, embedded_host: Host):
    with translation.override("vi"):
        with pytest.raises(ValidationError) as refused:
            services.domain_grow_disk(actor=admin_user, host_name="embedded", uuid=TEST_DOMAIN_UUID, target="vdz",
                                      size_gib=9)
        assert refused.value.message_dict == {"target": ["vdz không phải là volume lưu trữ của test."]}
    assert AuditEntry.objects.get(action="domain.disk-grow").message == "vdz is not a storage volume of test."


def test_states_read_in_vietnamese_while_the_machine_values_stay(vietnamese_admin: User, embedded_host: Host):
    client = client_for(vietnamese_admin)

    page = client.get("/domains/", {"all": ""}).content.decode()
    assert 'data-state="running"' in page and ">đang chạy<" in page

    # Filters and sorting take virsh's own option names and values, whatever the reader's language.
    assert f'id="{ROW_TARGET}"' in client.get("/domains/", {"state-running": "", "sort": "-state"}).content.decode()
    assert f'id="{ROW_TARGET}"' not in client.get("/domains/", {"state-shutoff": ""}).content.decode()
    rows = client.get("/domains/", {"all": "", "format": "json"}).json()["domains"]
    assert [row["state"] for row in rows] == ["running"]
