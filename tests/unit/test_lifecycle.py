"""Every lifecycle action through the page on test:///default, as a user sees it."""

from __future__ import annotations

import pytest

from accounts.models import User
from audit.models import AuditEntry
from domains import virt
from domains.locks import domain_action_lock
from domains.models import Grant, Host
from tests.conftest import TEST_DOMAIN_UUID, client_for

ROW_TARGET = f"domain-embedded-{TEST_DOMAIN_UUID}"
URL = f"/domains/embedded/{TEST_DOMAIN_UUID}/"


def act(user: User, action: str, **extra: str):
    return client_for(user).post(URL + "action/", {"action": action, **extra},
                                 HTTP_HX_REQUEST="true", HTTP_HX_TARGET=ROW_TARGET)


def state_of(user: User) -> str:
    row = client_for(user).get("/domains/", {"all": "", "format": "json"}).json()["domains"][0]
    return "saved" if row["managed_save"] and row["state"] == "shut off" else row["state"]


@pytest.mark.parametrize(
    ("steps", "final_state"),
    [
        (["pause"], "paused"),
        (["pause", "resume"], "running"),
        (["force-off"], "shut off"),
        (["force-off", "start"], "running"),
        (["shutdown"], "shut off"),
        (["reboot"], "running"),
        (["reset"], "running"),
        (["save"], "saved"),
        (["save", "restore"], "running"),
        (["save", "discard-save"], "shut off"),
        (["pause", "save"], "saved"),
    ],
)
def test_actions_move_the_vm_through_its_states(admin_user, embedded_host, steps, final_state):
    for step in steps:
        response = act(admin_user, step)
        assert response.status_code == 200
        assert 'class="message success"' in response.content.decode(), response.content.decode()
    assert state_of(admin_user) == final_state


def test_the_row_comes_back_with_its_new_state_and_only_valid_actions(admin_user, embedded_host):
    html = act(admin_user, "pause").content.decode()
    assert f'<tr id="{ROW_TARGET}"' in html and 'data-state="paused"' in html
    assert 'data-action="resume"' in html and 'data-action="pause"' not in html
    assert 'hx-swap-oob="true"' in html and "test paused." in html


def test_autostart_toggles_and_the_menu_follows(admin_user, embedded_host):
    html = act(admin_user, "autostart-on").content.decode()
    assert 'data-action="autostart-off"' in html
    assert client_for(admin_user).get("/domains/", {"autostart": "", "format": "json"}).json()["domains"]
    act(admin_user, "autostart-off")
    assert not client_for(admin_user).get("/domains/", {"autostart": "", "format": "json"}).json()["domains"]


def test_an_action_invalid_in_the_state_is_refused_in_words_and_audited(admin_user, embedded_host):
    html = act(admin_user, "resume").content.decode()
    assert "Resume is not possible while the machine is running." in html
    entry = AuditEntry.objects.get(action="domain.resume")
    assert entry.result == AuditEntry.Result.FAILED and entry.domain_name == "test"
    assert state_of(admin_user) == "running"


def test_a_second_action_while_one_is_in_progress_is_told_so(admin_user, embedded_host):
    with domain_action_lock(embedded_host.pk, TEST_DOMAIN_UUID):
        html = act(admin_user, "force-off").content.decode()
    assert "already in progress" in html
    assert state_of(admin_user) == "running"
    assert AuditEntry.objects.get(action="domain.force-off").result == AuditEntry.Result.FAILED


def test_two_starts_act_once_and_the_second_hears_it_is_already_running(admin_user, embedded_host):
    act(admin_user, "force-off")
    first, second = act(admin_user, "start").content.decode(), act(admin_user, "start").content.decode()
    assert "test started." in first
    assert "Start is not possible while the machine is running." in second


def test_every_action_is_audited_before_and_after(admin_user, embedded_host):
    act(admin_user, "pause")
    entry = AuditEntry.objects.get(action="domain.pause")
    assert entry.result == AuditEntry.Result.SUCCEEDED
    assert entry.finished_at is not None and entry.finished_at >= entry.created_at
    assert (entry.actor, entry.host_name, str(entry.domain_uuid)) == (admin_user, "embedded", TEST_DOMAIN_UUID)


def test_a_tenant_acts_on_its_granted_vm(tenant_user, tenant_grant):
    assert "test paused." in act(tenant_user, "pause").content.decode()


def test_another_tenant_gets_404_and_a_denied_audit_row(other_tenant_user, tenant_grant):
    assert act(other_tenant_user, "force-off").status_code == 404
    assert AuditEntry.objects.get(action="domain.force-off").result == AuditEntry.Result.DENIED
    virt.pool.close_all()


def test_view_only_grant_sees_no_actions_and_cannot_act(tenant_user, embedded_host):
    Grant.objects.create(host=embedded_host, domain_uuid=TEST_DOMAIN_UUID, user=tenant_user)
    page = client_for(tenant_user).get(URL).content.decode()
    assert 'data-action="' not in page
    assert act(tenant_user, "force-off").status_code == 403
    assert AuditEntry.objects.get(action="domain.force-off").result == AuditEntry.Result.DENIED


def test_get_never_acts(admin_user, embedded_host):
    assert client_for(admin_user).get(URL + "action/", {"action": "force-off"}).status_code == 405
    assert state_of(admin_user) == "running"


def test_unknown_action_is_a_bad_request(admin_user, embedded_host):
    assert client_for(admin_user).post(URL + "action/", {"action": "format-disk"}).status_code == 400


def test_without_htmx_an_action_redirects_to_the_vm_page_with_its_message(admin_user, embedded_host):
    client = client_for(admin_user)
    response = client.post(URL + "action/", {"action": "pause"}, follow=True)
    assert response.redirect_chain[-1][0] == URL
    assert "test paused." in response.content.decode()


def test_snapshots_create_revert_delete(admin_user, embedded_host):
    client = client_for(admin_user)
    page = client.post(URL + "snapshots/", {"name": "before-upgrade", "description": "known good"}, follow=True)
    assert "Snapshot before-upgrade of test created" in page.content.decode()
    assert 'data-snapshot="before-upgrade"' in page.content.decode()
    act(admin_user, "pause")
    page = client.post(URL + "snapshots/before-upgrade/", {"action": "revert"}, follow=True)
    assert "reverted to snapshot before-upgrade" in page.content.decode()
    assert state_of(admin_user) == "running"
    page = client.post(URL + "snapshots/before-upgrade/", {"action": "delete"}, follow=True)
    assert 'data-snapshot="before-upgrade"' not in page.content.decode()
    assert [e.action for e in AuditEntry.objects.order_by("id")].count("snapshot.create") == 1


def test_a_bad_snapshot_name_is_refused_and_nothing_is_created(admin_user, embedded_host):
    page = client_for(admin_user).post(URL + "snapshots/", {"name": "no spaces please"}, follow=True)
    assert "letters, numbers, underscores or hyphens" in page.content.decode()
    assert "No snapshots." in page.content.decode()


def test_delete_undefines_and_removes_grants(admin_user, tenant_grant):
    client = client_for(admin_user)
    response = client.post(URL + "delete/", {"remove_managed_save": "on", "remove_snapshot_metadata": "on"})
    assert response.status_code == 302
    assert client.get("/domains/", {"all": "", "format": "json"}).json()["domains"] == []
    assert not Grant.objects.exists()
    assert client.get(URL).status_code == 404


def test_deleting_a_vm_but_keeping_its_snapshots_metadata_is_refused_and_changes_nothing(admin_user, embedded_host):
    client = client_for(admin_user)
    client.post(URL + "snapshots/", {"name": "keep-me"})
    page = client.post(URL + "delete/", {"remove_managed_save": "on"}, follow=True).content.decode()
    assert "test has 1 snapshot: delete them first, or let their metadata go with the machine." in page
    assert state_of(admin_user) == "running"
    assert AuditEntry.objects.get(action="domain.delete").result == AuditEntry.Result.FAILED


def test_the_vm_page_shows_devices_and_says_the_agent_is_absent(admin_user, embedded_host):
    client = client_for(admin_user)
    page = client.get(URL).content.decode()
    assert "/guest/diskimage1" in page and "no channel" in page
    agent = client.get(URL + "agent/").content.decode()
    assert "no guest agent channel" in agent


def test_a_host_that_cannot_do_an_action_says_so_plainly(admin_user, embedded_host):
    # The test driver has no guest agent: an agent-mode shutdown is refused, in words.
    html = act(admin_user, "shutdown", mode="agent").content.decode()
    assert 'class="message error"' in html
    assert "test:///" not in html
    assert state_of(admin_user) == "running"


@pytest.fixture
def host_named_lab(db) -> Host:
    return Host.objects.create(name="lab", uri="test:///default")
