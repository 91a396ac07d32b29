"""Directory groups to roles, and the OpenID Connect backend's checks: whose token, which user, which role.

The whole flow against a real provider is tests/e2e/test_sign_in.py; these pin the decisions it relies on.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from django.core.exceptions import ImproperlyConfigured, SuspiciousOperation
from django.test import Client

from accounts.models import OidcIdentity, User
from accounts.oidc import OpenIDConnectBackend
from accounts.roles import role_for_groups
from tests.support.settings import configure, settings_from_env
from vmportal import settings as vmportal_settings

ISSUER, CLIENT, SECRET = "https://id.example.org", "vmportal", "a-client-secret-long-enough-for-hs256"
MAPPING = {"vm-admins": "admin", "vm-operators": "operator"}  # as VMPORTAL_…_ROLE_GROUPS below reads


def test_the_highest_mapped_group_decides_and_no_mapped_group_means_tenant():
    assert role_for_groups(["staff", "VM-Operators", "vm-admins"], MAPPING) == User.Role.ADMIN
    assert role_for_groups(["vm-operators"], MAPPING) == User.Role.OPERATOR
    assert role_for_groups(["staff"], MAPPING) == User.Role.TENANT


def test_a_role_mapping_is_read_from_the_environment_and_a_wrong_one_says_what_is_wrong(monkeypatch):
    monkeypatch.setenv("VMPORTAL_LDAP_ROLE_GROUPS", "admin=cn=VMAdmins,ou=groups,dc=example,dc=org; operator=cn=ops")
    assert vmportal_settings._env_role_groups("VMPORTAL_LDAP_ROLE_GROUPS") == {
        "cn=vmadmins,ou=groups,dc=example,dc=org": "admin", "cn=ops": "operator"}
    monkeypatch.setenv("VMPORTAL_LDAP_ROLE_GROUPS", "root=cn=wheel")
    with pytest.raises(ImproperlyConfigured, match="'root=cn=wheel' is not ROLE=GROUP"):
        vmportal_settings._env_role_groups("VMPORTAL_LDAP_ROLE_GROUPS")


@pytest.fixture
def backend(settings) -> OpenIDConnectBackend:
    """The backend as these variables configure it; HS256 (signed with the client secret) needs no provider keys."""
    configure(settings, ("OIDC_",), VMPORTAL_OIDC_ISSUER=ISSUER, VMPORTAL_OIDC_CLIENT_ID=CLIENT,
              VMPORTAL_OIDC_CLIENT_SECRET=SECRET, VMPORTAL_OIDC_SIGN_ALGO="HS256",
              VMPORTAL_OIDC_AUTHORIZATION_ENDPOINT=f"{ISSUER}/auth",
              VMPORTAL_OIDC_ROLE_GROUPS="admin=vm-admins;operator=vm-operators")
    return OpenIDConnectBackend()


def id_token(**claims: object) -> str:
    return jwt.encode({"iss": ISSUER, "aud": CLIENT, "sub": "subject-1", **claims}, SECRET, algorithm="HS256")


def test_an_id_token_for_another_client_or_from_another_issuer_is_refused(backend: OpenIDConnectBackend):
    assert backend.get_payload_data(id_token(), SECRET)["sub"] == "subject-1"
    for wrong in ({"aud": "another-app"}, {"iss": "https://evil.example.org"}):
        with pytest.raises(SuspiciousOperation):
            backend.get_payload_data(id_token(**wrong), SECRET)


def sign_in(backend: OpenIDConnectBackend, monkeypatch, **userinfo: object) -> User:
    claims = {"sub": "subject-1", **userinfo}
    monkeypatch.setattr(backend, "get_userinfo", lambda access_token, id_token, payload: claims)
    return backend.get_or_create_user("access", "id", {"sub": "subject-1", "iss": ISSUER})


def test_the_first_sign_in_creates_the_user_and_the_next_finds_it_by_subject(backend, monkeypatch, db: None):
    olga = sign_in(backend, monkeypatch, preferred_username="olga", email="olga@example.org",
                   groups=["vm-operators", "staff"])
    assert (olga.username, olga.role, olga.has_usable_password()) == ("olga", User.Role.OPERATOR, False)
    assert sorted(olga.groups.values_list("name", flat=True)) == ["staff", "vm-operators"]
    # Renamed at the provider and moved out of the operators: the same account, now a tenant.
    again = sign_in(backend, monkeypatch, preferred_username="olga.new", groups=["staff"])
    assert again.pk == olga.pk
    assert User.objects.get(pk=olga.pk).role == User.Role.TENANT
    assert OidcIdentity.objects.get().subject == "subject-1"


def test_a_provider_user_never_takes_over_a_local_account_of_the_same_name(backend, monkeypatch,
                                                                           admin_user: User):
    with pytest.raises(SuspiciousOperation, match="exists here already"):
        sign_in(backend, monkeypatch, preferred_username=admin_user.username, email=admin_user.email)
    assert not OidcIdentity.objects.exists()


def test_userinfo_about_another_subject_is_refused(backend, monkeypatch, db: None):
    monkeypatch.setattr(backend, "get_userinfo", lambda *args: {"sub": "someone-else", "preferred_username": "x"})
    with pytest.raises(SuspiciousOperation):
        backend.get_or_create_user("access", "id", {"sub": "subject-1"})
    assert not User.objects.exists()


def test_the_login_page_offers_single_sign_on_which_starts_at_the_provider_with_pkce(backend, db: None):
    login_page = Client().get("/accounts/login/?next=/audit/").content.decode()
    assert 'href="/accounts/login/oidc/?next=/audit/"' in login_page and "Sign in with single sign-on" in login_page
    started = Client().get("/accounts/login/oidc/?next=/audit/")
    location = urlsplit(started["Location"])
    query = parse_qs(location.query)
    assert f"{location.scheme}://{location.netloc}{location.path}" == f"{ISSUER}/auth"
    assert query["client_id"] == [CLIENT] and query["code_challenge_method"] == ["S256"]
    assert query["redirect_uri"] == ["http://testserver/accounts/login/oidc/callback/"]


def test_a_callback_that_does_not_complete_says_so_on_the_login_page(backend, db: None):
    page = Client().get("/accounts/login/oidc/callback/?code=forged&state=unknown", follow=True)
    assert page.redirect_chain[-1][0] == "/accounts/login/"
    assert "Signing in with single sign-on did not work" in page.content.decode()


def signed_in_through_the_provider(user: User) -> Client:
    client = Client()
    client.force_login(user, backend="accounts.oidc.OpenIDConnectBackend")
    session = client.session
    session["oidc_id_token"] = "the-users-id-token"  # where the callback keeps it
    session.save()
    return client


def test_signing_out_after_single_sign_on_signs_out_at_the_provider_and_comes_back_to_the_login_page(
        backend, monkeypatch, tenant_user: User):
    monkeypatch.setattr("accounts.oidc._discovery", lambda issuer: {"end_session_endpoint": f"{issuer}/session/end"})
    client = signed_in_through_the_provider(tenant_user)
    location = urlsplit(client.post("/accounts/logout/")["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == f"{ISSUER}/session/end"
    assert parse_qs(location.query) == {"id_token_hint": ["the-users-id-token"], "client_id": [CLIENT],
                                        "post_logout_redirect_uri": ["http://testserver/accounts/login/"]}
    assert client.get("/domains/")["Location"].startswith("/accounts/login/")  # signed out here already


def test_signing_out_stays_here_for_password_users_and_providers_without_a_logout_endpoint(
        backend, monkeypatch, tenant_user: User):
    monkeypatch.setattr("accounts.oidc._discovery", lambda issuer: {"end_session_endpoint": f"{issuer}/session/end"})
    password_user = Client()
    password_user.force_login(tenant_user)
    assert password_user.post("/accounts/logout/")["Location"] == "/accounts/login/"

    monkeypatch.setattr("accounts.oidc._discovery", lambda issuer: {})
    client = signed_in_through_the_provider(tenant_user)
    assert client.post("/accounts/logout/")["Location"] == "/accounts/login/"
    assert client.get("/domains/")["Location"].startswith("/accounts/login/")


def test_forms_may_lead_to_the_provider_for_its_logout_redirect():
    """The logout form's answer redirects to the provider, and a browser applies form-action to that redirect."""
    policy = settings_from_env(VMPORTAL_OIDC_ISSUER=ISSUER, VMPORTAL_OIDC_END_SESSION_ENDPOINT=f"{ISSUER}/logout")
    assert policy["CONTENT_SECURITY_POLICY"]["form-action"] == ["'self'", ISSUER]
