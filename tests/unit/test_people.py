"""The people pages: users, groups, grants with the VM picker, Share on a VM's page, define allowances.

Admins only; everybody else is told nothing exists (404), and a refused write leaves a denied audit row.
"""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Group
from django.http import Http404

from accounts.models import User
from audit.models import AuditEntry
from domains.models import DefineAllowance, Grant, Host
from people import services
from tests.conftest import PASSWORD, TEST_DOMAIN_UUID, client_for

VM_PAGE = f"/domains/embedded/{TEST_DOMAIN_UUID}/"
SHARE = f"/people/share/embedded/{TEST_DOMAIN_UUID}/"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def audit_of(user: User) -> list[tuple[str, str]]:
    return list(AuditEntry.objects.filter(actor=user).order_by("pk").values_list("action", "result"))


# --- Users ---


def test_an_admin_creates_a_user_who_can_then_sign_in(admin_user: User):
    client = client_for(admin_user)
    response = client.post("/people/", {"username": "nina", "password": "a long enough secret", "role": "tenant"})
    nina = User.objects.get(username="nina")
    assert response.status_code == 302 and response["Location"] == f"/people/users/{nina.pk}/"
    assert nina.role == User.Role.TENANT and nina.check_password("a long enough secret")
    assert audit_of(admin_user) == [("user.create", "succeeded")]
    assert "nina" in client.get("/people/").content.decode()


def test_a_weak_password_is_refused_beside_its_field_and_the_form_keeps_what_was_typed(admin_user: User):
    response = client_for(admin_user).post("/people/", {"username": "nina", "password": "password",
                                                        "role": "operator"})
    body = response.content.decode()
    assert response.status_code == 400
    assert "This password is too common." in body
    assert 'value="nina"' in body and '<option value="operator" selected>' in body
    assert not User.objects.filter(username="nina").exists()
    assert audit_of(admin_user) == [("user.create", "failed")]


def test_a_taken_username_is_said_in_words(admin_user: User, tenant_user: User):
    response = client_for(admin_user).post("/people/", {"username": tenant_user.username,
                                                        "password": "a long enough secret", "role": "tenant"})
    assert response.status_code == 400
    assert "A user with that username already exists." in response.content.decode()


def test_an_admin_changes_role_groups_and_sign_in_of_a_user(admin_user: User, tenant_user: User):
    group = Group.objects.create(name="lab")
    response = client_for(admin_user).post(f"/people/users/{tenant_user.pk}/", {
        "role": "operator", "groups": [group.pk], "password": ""})  # "is_active" unticked
    assert response.status_code == 302
    tenant_user.refresh_from_db()
    assert (tenant_user.role, tenant_user.is_active, list(tenant_user.groups.all())) == ("operator", False, [group])
    assert tenant_user.check_password(PASSWORD)  # an empty password field keeps the old one
    assert audit_of(admin_user) == [("user.update", "succeeded")]


def test_an_admin_cannot_demote_itself(admin_user: User):
    response = client_for(admin_user).post(f"/people/users/{admin_user.pk}/", {"role": "tenant", "is_active": "on"})
    assert response.status_code == 400
    assert "You cannot take away your own admin rights" in response.content.decode()
    admin_user.refresh_from_db()
    assert admin_user.role == User.Role.ADMIN


# --- Groups ---


def test_an_admin_creates_a_group_and_changes_its_members(admin_user: User, tenant_user: User,
                                                         other_tenant_user: User):
    client = client_for(admin_user)
    response = client.post("/people/groups/", {"name": "lab", "members": [tenant_user.pk]})
    group = Group.objects.get(name="lab")
    assert response["Location"] == f"/people/groups/{group.pk}/"
    assert list(group.user_set.all()) == [tenant_user]
    client.post(f"/people/groups/{group.pk}/", {"name": "lab", "members": [other_tenant_user.pk]})
    assert list(group.user_set.all()) == [other_tenant_user]
    assert audit_of(admin_user) == [("group.create", "succeeded"), ("group.update", "succeeded")]
    assert '<td><a href="/people/groups/' in client.get("/people/groups/").content.decode()


# --- Grants ---


def test_the_grant_form_picks_the_vm_by_name_from_the_inventory(admin_user: User, embedded_host: Host):
    body = client_for(admin_user).get("/people/grants/").content.decode()
    assert f'<option value="embedded/{TEST_DOMAIN_UUID}">test (embedded)</option>' in body
    assert 'data-filters="id_vm"' in body  # the search box that narrows the picker


def test_an_admin_shares_a_vm_from_the_grants_page_and_the_tenant_sees_it(admin_user: User, tenant_user: User,
                                                                         embedded_host: Host):
    assert client_for(tenant_user).get(VM_PAGE).status_code == 404
    response = client_for(admin_user).post("/people/grants/", {
        "vm": f"embedded/{TEST_DOMAIN_UUID}", "user": tenant_user.pk, "can_console": "on"})
    assert response.status_code == 302
    grant = Grant.objects.get(user=tenant_user)
    assert (grant.domain_name, grant.can_operate, grant.can_console, grant.owner) == ("test", False, True, False)
    assert audit_of(admin_user) == [("grant.save", "succeeded")]
    assert client_for(tenant_user).get(VM_PAGE).status_code == 200


def test_a_vm_that_is_not_in_the_picker_is_refused_in_words(admin_user: User, tenant_user: User,
                                                           embedded_host: Host):
    response = client_for(admin_user).post("/people/grants/", {
        "vm": "embedded/00000000-0000-4000-8000-000000000000", "user": tenant_user.pk})
    assert response.status_code == 400
    assert "Select a valid choice." in response.content.decode()
    assert not Grant.objects.exists()


def test_a_grant_needs_a_user_or_a_group(admin_user: User, embedded_host: Host):
    response = client_for(admin_user).post("/people/grants/", {"vm": f"embedded/{TEST_DOMAIN_UUID}"})
    assert response.status_code == 400
    assert "Choose a user or a group." in response.content.decode()


def test_sharing_again_changes_the_rights_of_the_same_grant(admin_user: User, tenant_grant: Grant):
    client_for(admin_user).post(SHARE, {"user": tenant_grant.user_id})  # every right ticked off
    grant = Grant.objects.get()
    assert grant.pk == tenant_grant.pk and not grant.can_operate and not grant.can_console


def test_grants_are_listed_per_user_including_its_groups_and_per_vm(admin_user: User, tenant_user: User,
                                                                   embedded_host: Host):
    group = Group.objects.create(name="lab")
    tenant_user.groups.add(group)
    Grant.objects.create(host=embedded_host, domain_uuid=TEST_DOMAIN_UUID, domain_name="test", group=group)
    client = client_for(admin_user)
    assert "group lab" in client.get(f"/people/users/{tenant_user.pk}/").content.decode()
    assert "group lab" in client.get(f"/people/groups/{group.pk}/").content.decode()
    assert "group lab" in client.get(f"/people/grants/?vm=embedded/{TEST_DOMAIN_UUID}").content.decode()
    assert "Not shared with anybody." in client.get(
        "/people/grants/?vm=embedded/00000000-0000-4000-8000-000000000000").content.decode()


def test_revoking_a_grant_hides_the_vm_again_and_returns_to_the_page_it_came_from(admin_user: User,
                                                                                   tenant_grant: Grant):
    response = client_for(admin_user).post(f"/people/grants/{tenant_grant.pk}/revoke/", {"next": VM_PAGE})
    assert response["Location"] == VM_PAGE
    assert not Grant.objects.exists()
    assert client_for(tenant_grant.user).get(VM_PAGE).status_code == 404


def test_revoking_goes_back_only_to_a_page_of_this_site(admin_user: User, tenant_grant: Grant):
    response = client_for(admin_user).post(f"/people/grants/{tenant_grant.pk}/revoke/",
                                           {"next": "https://evil.example/"})
    assert response["Location"] == "/people/grants/"


# --- Share on a VM's page ---


def test_the_vm_page_offers_share_to_admins_with_each_right_explained(admin_user: User, tenant_grant: Grant):
    body = client_for(admin_user).get(VM_PAGE).content.decode()
    assert 'id="sharing"' in body
    for right, label, words in (("can_operate", "Operate", "start, shut down"),
                                ("can_console", "Console", "open its screen"), ("owner", "Owner", "may delete it")):
        # Each right's line: the box, its name, and what it allows, which the box is described by.
        assert f'name="{right}" aria-describedby="id_{right}_helptext"' in body
        assert f'{label}</label>: <span class="helptext" id="id_{right}_helptext">{words}' in body
    assert "tina-tenant" in body  # the current share, with its Remove button
    assert f"/people/grants/{tenant_grant.pk}/revoke/" in body


@pytest.mark.parametrize("who", ["operator_user", "tenant_user"])
def test_nobody_but_an_admin_sees_share(who: str, request: pytest.FixtureRequest, tenant_grant: Grant):
    body = client_for(request.getfixturevalue(who)).get(VM_PAGE).content.decode()
    assert 'id="sharing"' not in body and "/people/" not in body


def test_share_from_the_vm_page_returns_to_it(admin_user: User, other_tenant_user: User, embedded_host: Host):
    response = client_for(admin_user).post(SHARE, {"user": other_tenant_user.pk, "can_operate": "on"})
    assert response["Location"] == f"{VM_PAGE}#sharing"
    assert Grant.objects.get(user=other_tenant_user).can_operate


def test_a_refused_share_is_shown_again_with_what_was_chosen(admin_user: User, tenant_user: User,
                                                            embedded_host: Host):
    group = Group.objects.create(name="lab")
    response = client_for(admin_user).post(SHARE, {"user": tenant_user.pk, "group": group.pk, "owner": "on"})
    body = response.content.decode()
    assert response.status_code == 400
    assert "Choose a user or a group, not both." in body
    assert re.search(r'<input type="checkbox" name="owner"[^>]* checked>', body)


def test_sharing_a_vm_that_does_not_exist_is_a_404(admin_user: User, tenant_user: User, embedded_host: Host):
    response = client_for(admin_user).post("/people/share/embedded/00000000-0000-4000-8000-000000000000/",
                                           {"user": tenant_user.pk})
    assert response.status_code == 404


@pytest.mark.parametrize("who", ["operator_user", "tenant_user"])
def test_a_share_by_anybody_but_an_admin_is_a_404_and_audited_as_denied(who: str, request: pytest.FixtureRequest,
                                                                        tenant_grant: Grant, other_tenant_user: User):
    user = request.getfixturevalue(who)
    response = client_for(user).post(SHARE, {"user": other_tenant_user.pk, "owner": "on"})
    assert response.status_code == 404
    assert not Grant.objects.filter(user=other_tenant_user).exists()
    assert audit_of(user) == [("grant.save", "denied")]


# --- Define allowances ---


def test_an_admin_adds_edits_and_deletes_an_allowance(admin_user: User, tenant_user: User, embedded_host: Host):
    client = client_for(admin_user)
    response = client.post("/people/allowances/", {
        "user": tenant_user.pk, "hosts": [embedded_host.pk], "max_vms": "3", "max_vcpus": "2",
        "max_memory_mib": "1024", "max_storage_gib": "10"})
    assert response.status_code == 302
    allowance = DefineAllowance.objects.get()
    assert list(allowance.hosts.all()) == [embedded_host] and allowance.max_vms == 3
    client.post(f"/people/allowances/{allowance.pk}/", {
        "user": tenant_user.pk, "max_vms": "4", "max_vcpus": "2", "max_memory_mib": "1024", "max_storage_gib": "10"})
    allowance.refresh_from_db()
    assert allowance.max_vms == 4 and not allowance.hosts.exists()  # no host ticked: every host
    assert "tina-tenant" in client.get("/people/allowances/").content.decode()
    client.post(f"/people/allowances/{allowance.pk}/delete/")
    assert not DefineAllowance.objects.exists()
    assert audit_of(admin_user) == [("allowance.create", "succeeded"), ("allowance.update", "succeeded"),
                                    ("allowance.delete", "succeeded")]


def test_an_allowance_for_nobody_is_refused_in_words(admin_user: User):
    response = client_for(admin_user).post("/people/allowances/", {
        "max_vms": "3", "max_vcpus": "2", "max_memory_mib": "1024", "max_storage_gib": "10"})
    assert response.status_code == 400
    assert "Choose a user or a group." in response.content.decode()
    assert 'value="3"' in response.content.decode()


# --- Services refuse anybody but an admin, audited ---


def test_the_services_refuse_an_operator(operator_user: User, tenant_user: User, embedded_host: Host):
    allowance = DefineAllowance.objects.create(user=tenant_user)
    refused = [
        lambda: services.user_create(actor=operator_user, username="sneaky", password="a long enough secret",
                                     role="admin"),
        lambda: services.user_update(actor=operator_user, user=tenant_user, role="admin", is_active=True, groups=[]),
        lambda: services.group_save(actor=operator_user, group=Group(name="sneaky"), members=[operator_user]),
        lambda: services.grant_share(actor=operator_user, host=embedded_host, uuid=TEST_DOMAIN_UUID,
                                     user=tenant_user, group=None, can_operate=True, can_console=True, owner=True),
        lambda: services.allowance_save(actor=operator_user, allowance=DefineAllowance(user=operator_user),
                                        hosts=[], pools=[]),
        lambda: services.allowance_delete(actor=operator_user, allowance=allowance),
    ]
    for call in refused:
        with pytest.raises(Http404):
            call()
    tenant_user.refresh_from_db()
    assert tenant_user.role == User.Role.TENANT
    assert not User.objects.filter(username="sneaky").exists() and not Group.objects.exists()
    assert not Grant.objects.exists() and list(DefineAllowance.objects.all()) == [allowance]
    assert audit_of(operator_user) == [
        ("user.create", "denied"), ("user.update", "denied"), ("group.create", "denied"), ("grant.save", "denied"),
        ("allowance.create", "denied"), ("allowance.delete", "denied")]


def test_share_offers_tenants_only(admin_user: User, operator_user: User, tenant_user: User, embedded_host: Host):
    body = client_for(admin_user).get(SHARE).content.decode()
    assert f'<option value="{tenant_user.pk}">tina-tenant</option>' in body
    assert "oscar-operator" not in body  # sees every VM already
    response = client_for(admin_user).post(SHARE, {"user": operator_user.pk})
    assert response.status_code == 400
    assert "Select a valid choice." in response.content.decode()
