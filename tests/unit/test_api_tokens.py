"""API tokens: made on the user's page or by manage.py apitoken (shown once, kept hashed), refused when
expired or revoked, read-only ones refused every write, named in the audit log, and limited per token."""

from __future__ import annotations

import hashlib
import io
import re
from datetime import timedelta

from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from accounts.models import User
from api import services
from api.models import ApiToken
from audit.models import AuditEntry
from domains.models import Grant, Host
from tests.conftest import TEST_DOMAIN_UUID, client_for
from tests.support.api import api_test_defaults  # noqa: F401 - a fixture

DOMAINS = "/api/v1/domains/?all"
PAUSE = f"/api/v1/domains/embedded/{TEST_DOMAIN_UUID}/actions/pause/"


def with_token(text: str) -> Client:
    return Client(headers={"Authorization": f"Bearer {text}"})


def test_a_token_made_on_the_page_is_shown_once_and_kept_only_as_a_hash(tenant_user: User, tenant_grant: Grant):
    page = client_for(tenant_user)
    made = page.post("/accounts/tokens/", {"name": "backup script", "expires_days": "30"})
    assert made.status_code == 200
    [text] = re.findall(r'<code id="new-token">([^<]+)</code>', made.content.decode())
    token = ApiToken.objects.get(user=tenant_user)
    assert text not in str(list(ApiToken.objects.values()))
    assert token.secret_hash == hashlib.sha256(text.encode()).hexdigest()
    assert token.expires_at is not None and token.expires_at > timezone.now() + timedelta(days=29)

    again = page.get("/accounts/tokens/").content.decode()
    assert "backup script" in again and text not in again
    listed = with_token(text).get(DOMAINS)
    assert listed.status_code == 200
    assert [row["name"] for row in listed.json()["domains"]] == ["test"]
    assert ApiToken.objects.get(pk=token.pk).last_used_at is not None


def test_the_same_name_twice_is_refused_in_words(tenant_user: User):
    page = client_for(tenant_user)
    page.post("/accounts/tokens/", {"name": "ci"})
    refused = page.post("/accounts/tokens/", {"name": "ci"})
    assert refused.status_code == 400
    assert "You already have a token named ci." in refused.content.decode()
    assert ApiToken.objects.filter(user=tenant_user).count() == 1


def test_a_revoked_token_is_refused(tenant_user: User, tenant_grant: Grant):
    token, text = services.token_create(actor=tenant_user, name="ci")
    assert with_token(text).get(DOMAINS).status_code == 200
    revoked = client_for(tenant_user).post(f"/accounts/tokens/{token.pk}/revoke/")
    assert revoked.status_code == 302
    refused = with_token(text).get(DOMAINS)
    assert refused.status_code == 401
    assert refused["Content-Type"] == "application/problem+json"
    assert refused.json()["detail"] == "This token is unknown, revoked or expired."
    assert refused["WWW-Authenticate"].startswith("Bearer")


def test_another_users_token_cannot_be_revoked(tenant_user: User, other_tenant_user: User):
    token, text = services.token_create(actor=tenant_user, name="ci")
    assert client_for(other_tenant_user).post(f"/accounts/tokens/{token.pk}/revoke/").status_code == 404
    assert ApiToken.objects.get(pk=token.pk).revoked_at is None


def test_an_expired_token_and_a_made_up_one_are_refused(tenant_user: User, tenant_grant: Grant):
    token, text = services.token_create(actor=tenant_user, name="ci", expires_days=1)
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert with_token(text).get(DOMAINS).status_code == 401
    forged = text[:-4] + ("AAAA" if not text.endswith("AAAA") else "BBBB")  # the right prefix, a wrong secret
    assert with_token(forged).get(DOMAINS).status_code == 401
    assert with_token("not-a-token").get(DOMAINS).status_code == 401


def test_a_deactivated_users_token_is_refused(tenant_user: User, tenant_grant: Grant):
    _token, text = services.token_create(actor=tenant_user, name="ci")
    User.objects.filter(pk=tenant_user.pk).update(is_active=False)
    assert with_token(text).get(DOMAINS).status_code == 401


def test_a_read_only_token_reads_and_is_refused_every_write(admin_user: User, embedded_host: Host):
    _token, text = services.token_create(actor=admin_user, name="monitoring", read_only=True)
    client = with_token(text)
    assert client.get(DOMAINS).status_code == 200
    refused = client.post(PAUSE)
    assert refused.status_code == 403
    assert refused.json()["detail"] == "This token is read-only."
    [row] = client.get(DOMAINS).json()["domains"]
    assert row["state"] == "running"
    entry = AuditEntry.objects.get(actor=admin_user, action="api.refused")
    assert (entry.action, entry.result, entry.token_name) == ("api.refused", "denied", "monitoring")


def test_the_audit_log_names_the_token_an_action_came_through(tenant_user: User, tenant_grant: Grant):
    _token, text = services.token_create(actor=tenant_user, name="nightly")
    paused = with_token(text).post(PAUSE)
    assert paused.status_code == 200
    assert paused.json() == {"detail": "test paused."}
    entry = AuditEntry.objects.get(action="domain.pause")
    assert (entry.actor_name, entry.token_name, entry.result) == ("tina-tenant", "nightly", "succeeded")
    page = client_for(tenant_user).get("/audit/").content.decode()
    assert "(token nightly)" in page
    listed = with_token(text).get("/api/v1/audit/").json()["entries"]
    assert [(e["action"], e["token"]) for e in listed if e["action"] == "domain.pause"] == [("domain.pause", "nightly")]


def test_the_rate_limit_is_per_token_and_answers_429(tenant_user: User, tenant_grant: Grant, settings):
    settings.API_RATE = "3/minute"
    _one, first = services.token_create(actor=tenant_user, name="one")
    _two, second = services.token_create(actor=tenant_user, name="two")
    assert [with_token(first).get(DOMAINS).status_code for _ in range(3)] == [200, 200, 200]
    limited = with_token(first).get(DOMAINS)
    assert limited.status_code == 429
    assert limited["Content-Type"] == "application/problem+json"
    assert int(limited["Retry-After"]) > 0
    assert "throttled" in limited.json()["detail"]
    assert with_token(second).get(DOMAINS).status_code == 200


def test_manage_py_apitoken_create_prints_the_token_once(tenant_user: User, tenant_grant: Grant):
    out = io.StringIO()
    call_command("apitoken", "create", "tina-tenant", "--name", "deploy", "--expires", "7", "--read-only", stdout=out)
    text = out.getvalue().strip()
    assert text.startswith("vmp_")
    token = ApiToken.objects.get(user=tenant_user)
    assert (token.name, token.read_only) == ("deploy", True)
    assert token.expires_at is not None and token.expires_at < timezone.now() + timedelta(days=8)
    assert with_token(text).get(DOMAINS).status_code == 200
    assert with_token(text).post(PAUSE).status_code == 403
