"""LDAP sign-in against a real OpenLDAP (Debian's slapd, started here): through the login form, roles from the
directory's groups, groups mirrored, a wrong password refused and throttled like a local one; StartTLS with the
directory's CA trusted, and refused with another CA.

slapd not starting fails these tests: it is installed by bin/setup (debian-packages.txt).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from django.core.cache import cache
from django.test import Client

from accounts.models import User
from audit.models import AuditEntry
from lab import pki
from tests.support.portal import free_port
from tests.support.settings import configure
from tests.support.slapd import (
    ADMINS_GROUP,
    BIND_DN,
    BIND_PASSWORD,
    GROUPS,
    OPERATORS_GROUP,
    PEOPLE,
    TENANTS_GROUP,
    USERS,
    Slapd,
    slapd,  # noqa: F401 - a fixture
)

pytestmark = pytest.mark.integration

LOGIN = "/accounts/login/"


def configure_ldap(settings, slapd: Slapd, **variables: str) -> None:  # noqa: F811 - the fixture
    configure(settings, ("AUTH_LDAP_", "LDAP_"),
              VMPORTAL_LDAP_URI=slapd.uri, VMPORTAL_LDAP_BIND_DN=BIND_DN, VMPORTAL_LDAP_BIND_PASSWORD=BIND_PASSWORD,
              VMPORTAL_LDAP_USER_BASE=PEOPLE, VMPORTAL_LDAP_GROUP_BASE=GROUPS,
              VMPORTAL_LDAP_ROLE_GROUPS=f"admin={ADMINS_GROUP};operator={OPERATORS_GROUP};tenant={TENANTS_GROUP}",
              **variables)


@pytest.fixture(autouse=True)
def ldap_configured(slapd: Slapd, settings) -> None:  # noqa: F811 - the fixture
    configure_ldap(settings, slapd)
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    assert "accounts.ldap.DirectoryBackend" in settings.AUTHENTICATION_BACKENDS
    cache.clear()


def sign_in(client: Client, username: str, password: str):
    return client.post(LOGIN, {"username": username, "password": password}, follow=True)


def test_an_ldap_admin_signs_in_through_the_form_as_an_admin(db: None):
    client = Client()
    page = sign_in(client, "ada", USERS["ada"][0])
    assert page.redirect_chain[-1][0] == "/domains/"
    assert "ada (Admin)" in page.content.decode()
    assert "/hosts/" in page.content.decode()  # the admins' navigation
    ada = User.objects.get(username="ada")
    assert (ada.email, ada.first_name, ada.has_usable_password()) == ("ada@example.org", "Ada", False)
    assert list(ada.groups.values_list("name", flat=True)) == ["vmadmins"]
    entry = AuditEntry.objects.filter(action="login").latest("id")
    assert (entry.actor, entry.result, entry.message) == (ada, "succeeded", "signed in with LDAP")


def test_an_ldap_tenant_gets_the_mapped_role_and_its_groups_grants(db: None):
    client = Client()
    page = sign_in(client, "tom", USERS["tom"][0])
    assert "tom (Tenant)" in page.content.decode()
    tom = User.objects.get(username="tom")
    assert list(tom.groups.values_list("name", flat=True)) == ["vmtenants"]  # a grant to vmtenants reaches tom
    assert "/hosts/" not in page.content.decode()


def test_the_directory_decides_the_role_at_every_sign_in(db: None):
    User.objects.create_user(username="tom", role=User.Role.ADMIN)  # made an admin here, a tenant there
    page = sign_in(Client(), "tom", USERS["tom"][0])
    assert "tom (Tenant)" in page.content.decode()
    assert User.objects.get(username="tom").role == User.Role.TENANT


def test_without_a_role_mapping_the_role_set_here_stays(settings, db: None):
    settings.LDAP_ROLE_GROUPS = {}
    User.objects.create_user(username="tom", role=User.Role.OPERATOR)
    assert "tom (Operator)" in sign_in(Client(), "tom", USERS["tom"][0]).content.decode()


def test_a_wrong_ldap_password_is_refused_audited_and_throttled_like_a_local_one(settings, db: None):
    settings.LOGIN_FAILURE_LIMIT = 2
    for _ in range(2):
        refused = sign_in(Client(), "ada", "not-adas-password")
        assert "Please enter a correct username and password" in refused.content.decode()
    throttled = sign_in(Client(), "ada", USERS["ada"][0])  # the right password, once too late
    assert "Too many failed sign-ins" in throttled.content.decode()
    assert not User.objects.filter(username="ada", last_login__isnull=False).exists()
    assert list(AuditEntry.objects.filter(action="login").order_by("id").values_list("actor_name", "message")) == [
        ("ada", "refused: wrong username or password")] * 2 + [("ada", "refused: throttled")]


def test_local_accounts_still_sign_in_beside_ldap(tenant_user: User):
    page = sign_in(Client(), tenant_user.username, "correct horse battery staple")
    assert f"{tenant_user.username} (Tenant)" in page.content.decode()


def test_over_starttls_with_the_directorys_ca_trusted_a_user_signs_in(slapd: Slapd, settings,  # noqa: F811
                                                                       db: None):
    configure_ldap(settings, slapd, VMPORTAL_LDAP_START_TLS="1", VMPORTAL_LDAP_CA_FILE=str(slapd.ca_file))
    assert "ada (Admin)" in sign_in(Client(), "ada", USERS["ada"][0]).content.decode()


def test_over_starttls_a_directory_certificate_from_another_ca_is_refused_and_says_so(
        slapd: Slapd, settings, tmp_path: Path, caplog: pytest.LogCaptureFixture, db: None):  # noqa: F811
    pki.ensure_authority(tmp_path)  # a CA that did not sign the directory's certificate
    configure_ldap(settings, slapd, VMPORTAL_LDAP_START_TLS="1", VMPORTAL_LDAP_CA_FILE=str(tmp_path / "cacert.pem"))
    with caplog.at_level(logging.ERROR, logger="accounts.ldap"):
        page = sign_in(Client(), "ada", USERS["ada"][0])
    assert page.status_code == 200 and page.redirect_chain == []
    assert "The directory&#x27;s certificate could not be verified, so your password was not sent to it." in (
        page.content.decode())
    assert not User.objects.filter(username="ada").exists()
    assert f"the TLS handshake with {slapd.uri} failed" in caplog.text
    entry = AuditEntry.objects.filter(action="login").latest("id")
    assert (entry.actor_name, entry.result, entry.message) == (
        "ada", "denied", "refused: untrusted directory certificate")


def test_a_directory_that_does_not_answer_refuses_the_sign_in_and_says_so(settings, db: None):
    settings.AUTH_LDAP_SERVER_URI = f"ldap://127.0.0.1:{free_port()}"  # nothing listens there
    page = sign_in(Client(), "ada", USERS["ada"][0])
    assert "The directory could not be reached to check your password." in page.content.decode()
    assert AuditEntry.objects.filter(action="login").latest("id").message == "refused: directory unreachable"
