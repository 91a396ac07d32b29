"""Settings come from the environment: production passes `check --deploy`, defaults are safe."""

from __future__ import annotations

import os
import runpy
import secrets
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.test import Client

from accounts.models import User
from tests.conftest import PASSWORD

BASE_DIR = Path(django_settings.BASE_DIR)


@pytest.fixture(autouse=True)
def fast_password_hashing(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def clean_env(tmp_path: Path, **variables: str) -> dict[str, str]:
    """The test process's environment without any vmportal setting, plus `variables`."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("VMPORTAL_") and key not in ("DATABASE_URL", "REDIS_URL")}
    env.update(DJANGO_SETTINGS_MODULE="vmportal.settings", VMPORTAL_VAR_DIR=str(tmp_path), **variables)
    return env


Completed = subprocess.CompletedProcess[str]
CHECK_DEPLOY = ("manage.py", "check", "--deploy", "--fail-level", "WARNING")
STRONG = secrets.token_urlsafe(64)
PRODUCTION = {"VMPORTAL_PRODUCTION": "1", "VMPORTAL_SECRET_KEY": STRONG}


@pytest.fixture(scope="module")
def check_deploy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Future[Completed]]]:
    """manage.py in fresh processes (strong secret, weak secret, no secret), started together."""
    var_dir = tmp_path_factory.mktemp("var")
    runs = {
        "strong": (CHECK_DEPLOY, PRODUCTION),
        "weak": (CHECK_DEPLOY, {**PRODUCTION, "VMPORTAL_SECRET_KEY": "too-short"}),
        "no-secret": (("manage.py", "check"), {"VMPORTAL_PRODUCTION": "1"}),
    }
    with ThreadPoolExecutor(max_workers=len(runs)) as pool:
        yield {
            name: pool.submit(subprocess.run, [sys.executable, *args], cwd=BASE_DIR,
                              env=clean_env(var_dir, **variables), capture_output=True, text=True, timeout=120,
                              check=False)
            for name, (args, variables) in runs.items()
        }


def settings_from(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **variables: str) -> dict[str, Any]:
    """What vmportal/settings.py computes from this environment (run afresh, outside Django's setup)."""
    for key in list(os.environ):
        if key.startswith("VMPORTAL_") or key in ("DATABASE_URL", "REDIS_URL"):
            monkeypatch.delenv(key)
    for key, value in {"VMPORTAL_VAR_DIR": str(tmp_path), **variables}.items():
        monkeypatch.setenv(key, value)
    return runpy.run_path(str(BASE_DIR / "vmportal" / "settings.py"))


def test_production_settings_pass_check_deploy(check_deploy):
    done = check_deploy["strong"].result()
    assert done.returncode == 0, done.stderr + done.stdout
    assert "System check identified no issues" in done.stdout


def test_check_deploy_does_fail_on_a_weak_secret(check_deploy):
    """The check above can fail: a short secret key is a deployment warning that fails it."""
    done = check_deploy["weak"].result()
    assert done.returncode != 0
    assert "security.W009" in done.stderr + done.stdout


def test_production_without_a_secret_key_refuses_to_start(check_deploy):
    done = check_deploy["no-secret"].result()
    assert done.returncode != 0
    assert "ImproperlyConfigured: VMPORTAL_SECRET_KEY must be set in production." in done.stderr


def test_production_without_a_secret_key_is_refused_by_the_settings(monkeypatch, tmp_path: Path):
    with pytest.raises(ImproperlyConfigured, match=r"^VMPORTAL_SECRET_KEY must be set in production\.$"):
        settings_from(monkeypatch, tmp_path, VMPORTAL_PRODUCTION="1")


def test_development_defaults(monkeypatch, tmp_path: Path):
    development = settings_from(monkeypatch, tmp_path)
    assert development["ALLOWED_HOSTS"] == ["localhost", "127.0.0.1", "[::1]"]
    assert development["DEBUG"] is False
    assert development["SESSION_COOKIE_HTTPONLY"] is True
    assert development.get("SESSION_COOKIE_SECURE", False) is False  # plain http on a laptop still logs in


def test_production_values(monkeypatch, tmp_path: Path):
    production = settings_from(monkeypatch, tmp_path, **PRODUCTION, VMPORTAL_DEBUG="1",
                               VMPORTAL_ALLOWED_HOSTS="vmportal.example.org, ")
    assert production["SECRET_KEY"] == STRONG
    assert production["ALLOWED_HOSTS"] == ["vmportal.example.org"]
    assert production["DEBUG"] is False  # VMPORTAL_DEBUG cannot switch debug pages on in production
    assert production["SESSION_COOKIE_SECURE"] is True
    assert production["CSRF_COOKIE_SECURE"] is True
    assert production["SESSION_COOKIE_HTTPONLY"] is True


def test_allowed_hosts_is_never_a_wildcard_here():
    assert "*" not in django_settings.ALLOWED_HOSTS


def test_a_request_for_another_host_name_is_refused(db: None):
    response = Client().get("/accounts/login/", HTTP_HOST="evil.example")
    assert response.status_code == 400


def test_pages_send_hardening_headers(db: None):
    response = Client().get("/accounts/login/")
    # Never the page's address to another site (console URLs carry tickets). "no-referrer" is what
    # SECURITY.md names; "same-origin" is the same for other sites (see the CSRF test below).
    assert response["Referrer-Policy"] in ("no-referrer", "same-origin")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"


def _origin_a_browser_sends(referrer_policy: str) -> str:
    """Fetch standard: a same-origin POST under `no-referrer` carries `Origin: null`."""
    return "null" if referrer_policy == "no-referrer" else "http://testserver"


def test_a_browser_can_post_the_login_form_under_the_referrer_policy(tenant_user: User):
    client = Client(enforce_csrf_checks=True)
    page = client.get("/accounts/login/")
    token = client.cookies["csrftoken"].value
    response = client.post("/accounts/login/",
                           {"username": tenant_user.username, "password": PASSWORD, "csrfmiddlewaretoken": token},
                           HTTP_ORIGIN=_origin_a_browser_sends(page["Referrer-Policy"]))
    assert response.status_code == 302, response.content.decode()[:300]


def test_a_cross_site_login_post_is_refused(tenant_user: User):
    client = Client(enforce_csrf_checks=True)
    client.get("/accounts/login/")
    token = client.cookies["csrftoken"].value
    response = client.post("/accounts/login/",
                           {"username": tenant_user.username, "password": PASSWORD, "csrfmiddlewaretoken": token},
                           HTTP_ORIGIN="https://evil.example")
    assert response.status_code == 403


def test_the_session_cookie_is_httponly_and_samesite(tenant_user: User):
    response = Client().post("/accounts/login/", {"username": tenant_user.username, "password": PASSWORD})
    assert response.status_code == 302
    cookie = response.cookies[django_settings.SESSION_COOKIE_NAME]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"


def test_one_trusted_proxies_setting_with_the_old_console_name_as_a_fallback(monkeypatch, tmp_path: Path):
    assert settings_from(monkeypatch, tmp_path)["TRUSTED_PROXIES"] == {"127.0.0.1", "::1"}
    old = settings_from(monkeypatch, tmp_path, VMPORTAL_CONSOLE_TRUSTED_PROXIES="10.0.0.2")
    assert old["TRUSTED_PROXIES"] == {"10.0.0.2"}
    both = settings_from(monkeypatch, tmp_path, VMPORTAL_CONSOLE_TRUSTED_PROXIES="10.0.0.2",
                         VMPORTAL_TRUSTED_PROXIES="10.0.0.3, 10.1.0.0/16")
    assert both["TRUSTED_PROXIES"] == {"10.0.0.3", "10.1.0.0/16"}
    assert "CONSOLE_TRUSTED_PROXIES" not in both  # one setting, read by the pages and the console proxy alike
