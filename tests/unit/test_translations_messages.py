"""The words services and the hypervisor layer give people are in the reader's language; the audit log stays in
the site's (English), and the machine values (data-state, JSON, filters) do not move with the language."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.utils import translation

from accounts.models import User
from audit.models import AuditEntry
from domains import services
from domains.models import Host
from tests.conftest import TEST_DOMAIN_UUID, client_for

URL = f"/domains/embedded/{TEST_DOMAIN_UUID}/"
ROW_TARGET = f"domain-embedded-{TEST_DOMAIN_UUID}"


@pytest.fixture
def vietnamese_admin(admin_user: User) -> User:
    admin_user.language = "vi"
    admin_user.save(update_fields=["language"])
    return admin_user


def _act(user: User, action: str) -> str:
    return client_for(user).post(URL + "action/", {"action": action}, HTTP_HX_REQUEST="true",
                                 HTTP_HX_TARGET=ROW_TARGET).content.decode()


def test_a_refused_action_is_told_in_vietnamese_and_audited_in_english(vietnamese_admin: User, embedded_host: Host):
    page = _act(vietnamese_admin, "start")  # test:///default's machine is already running

    assert "Không thể thực hiện “Khởi động” khi máy ảo ở trạng thái “đang chạy”." in page
    entry = AuditEntry.objects.get(action="domain.start")
    assert entry.result == AuditEntry.Result.FAILED
    assert entry.message == "Start is not possible while the machine is running."


def test_a_done_action_is_told_in_vietnamese_and_audited_in_english(vietnamese_admin: User, embedded_host: Host):
    page = _act(vietnamese_admin, "pause")

    assert "Đã tạm dừng test." in page
    # The row that comes back reads the state and its reason in Vietnamese, and keeps virsh's value for scripts.
    assert 'data-state="paused"' in page
    assert 'class="state state-paused">đã tạm dừng</span> <small>người dùng</small>' in page
    assert AuditEntry.objects.get(action="domain.pause").message == "test paused."


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
    assert 'data-state="running"' in page and 'class="state state-running">đang chạy</span>' in page

    # Filters and sorting take virsh's own option names and values, whatever the reader's language.
    assert f'id="{ROW_TARGET}"' in client.get("/domains/", {"state-running": "", "sort": "-state"}).content.decode()
    assert f'id="{ROW_TARGET}"' not in client.get("/domains/", {"state-shutoff": ""}).content.decode()
    rows = client.get("/domains/", {"all": "", "format": "json"}).json()["domains"]
    assert [row["state"] for row in rows] == ["running"]
