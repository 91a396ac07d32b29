"""Logging in and out, failed-login throttling, and what each role means for Django's own flags."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.test import Client

from accounts.models import User
from tests.conftest import PASSWORD, client_for

LOGIN = "/accounts/login/"
THROTTLED = "Too many failed sign-ins"
WRONG = "Please enter a correct username and password"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def empty_cache():
    """Failed-login counters live in the cache; no test may inherit another's."""
    cache.clear()
    yield
    cache.clear()


def log_in(client: Client, username: str, password: str, remote_addr: str = "127.0.0.1"):
    return client.post(LOGIN, {"username": username, "password": password}, REMOTE_ADDR=remote_addr)


def test_login_page_shows_the_form():
    response = Client().get(LOGIN)
    assert response.status_code == 200
    body = response.content.decode()
    assert 'name="username"' in body and 'name="password"' in body
    assert 'name="csrfmiddlewaretoken"' in body


def test_correct_password_logs_in_and_lands_on_the_vm_list(tenant_user: User):
    client = Client()
    response = log_in(client, tenant_user.username, PASSWORD)
    assert response.status_code == 302
    assert response["Location"] == "/domains/"
    page = client.get("/domains/")
    assert page.status_code == 200
    assert f"{tenant_user.username} (Tenant)" in page.content.decode()


def test_login_follows_a_local_next_but_never_an_outside_one(tenant_user: User):
    response = Client().post(LOGIN + "?next=/audit/", {"username": tenant_user.username, "password": PASSWORD})
    assert response["Location"] == "/audit/"
    outside = Client().post(LOGIN + "?next=https://evil.example/", {"username": tenant_user.username,
                                                                      "password": PASSWORD})
    assert outside.status_code == 302
    assert outside["Location"] == "/domains/"


def test_wrong_password_shows_an_error_and_does_not_log_in(tenant_user: User):
    client = Client()
    response = log_in(client, tenant_user.username, "not the password")
    assert response.status_code == 200
    assert WRONG in response.content.decode()
    assert client.get("/domains/")["Location"].startswith(LOGIN)


def test_unknown_user_gets_the_same_error_as_a_wrong_password(db: None):
    response = log_in(Client(), "nobody-here", "whatever")
    assert response.status_code == 200
    assert WRONG in response.content.decode()


def test_inactive_user_cannot_log_in(tenant_user: User):
    tenant_user.is_active = False
    tenant_user.save()
    client = Client()
    response = log_in(client, tenant_user.username, PASSWORD)
    assert response.status_code == 200
    assert WRONG in response.content.decode()
    assert client.get("/domains/").status_code == 302


def test_after_the_failure_limit_even_the_right_password_is_refused_from_that_address(settings, tenant_user: User):
    for _ in range(settings.LOGIN_FAILURE_LIMIT):
        failed = log_in(Client(), tenant_user.username, "guess", remote_addr="127.0.0.2")
        assert WRONG in failed.content.decode()
        assert THROTTLED not in failed.content.decode()

    client = Client()
    response = log_in(client, tenant_user.username, PASSWORD, remote_addr="127.0.0.2")
    assert response.status_code == 200
    assert THROTTLED in response.content.decode()
    assert client.get("/domains/").status_code == 302  # still anonymous


def test_a_locked_username_and_address_does_not_lock_the_account_from_elsewhere(settings, admin_user: User):
    """Anyone can fail five times as `admin`; that must not keep the real admin out."""
    for _ in range(settings.LOGIN_FAILURE_LIMIT):
        log_in(Client(), admin_user.username, "guess", remote_addr="198.51.100.66")
    assert THROTTLED in log_in(Client(), admin_user.username, PASSWORD, remote_addr="198.51.100.66").content.decode()

    client = Client()
    assert log_in(client, admin_user.username, PASSWORD, remote_addr="192.0.2.10").status_code == 302
    assert client.get("/admin/").status_code == 200


def test_one_failure_short_of_the_limit_still_lets_the_right_password_in(settings, tenant_user: User):
    for _ in range(settings.LOGIN_FAILURE_LIMIT - 1):
        log_in(Client(), tenant_user.username, "guess")
    response = log_in(Client(), tenant_user.username, PASSWORD)
    assert response.status_code == 302


def test_a_success_clears_the_count_of_that_username_from_that_address(settings, tenant_user: User):
    """Failures before a successful login do not add up with later ones."""
    for _ in range(settings.LOGIN_FAILURE_LIMIT - 1):
        log_in(Client(), tenant_user.username, "guess", remote_addr="127.0.0.2")
    assert log_in(Client(), tenant_user.username, PASSWORD, remote_addr="127.0.0.2").status_code == 302
    for _ in range(settings.LOGIN_FAILURE_LIMIT - 1):
        log_in(Client(), tenant_user.username, "guess", remote_addr="127.0.0.2")
    assert log_in(Client(), tenant_user.username, PASSWORD, remote_addr="127.0.0.2").status_code == 302


def test_throttling_by_username_ignores_its_case(settings, tenant_user: User):
    for _ in range(settings.LOGIN_FAILURE_LIMIT):
        log_in(Client(), tenant_user.username.upper(), "guess", remote_addr="127.0.0.2")
    response = log_in(Client(), tenant_user.username, PASSWORD, remote_addr="127.0.0.2")
    assert THROTTLED in response.content.decode()


def test_one_address_guessing_many_usernames_is_throttled(settings, tenant_user: User):
    settings.LOGIN_FAILURE_ADDRESS_LIMIT = 8
    for number in range(settings.LOGIN_FAILURE_ADDRESS_LIMIT):
        failed = log_in(Client(), f"guess-{number % 3}", "guess", remote_addr="127.0.0.9")
        assert THROTTLED not in failed.content.decode()  # three names, under their own limit of five each
    from_there = log_in(Client(), tenant_user.username, PASSWORD, remote_addr="127.0.0.9")
    assert THROTTLED in from_there.content.decode()
    elsewhere = log_in(Client(), tenant_user.username, PASSWORD, remote_addr="127.0.0.10")
    assert elsewhere.status_code == 302


# Behind the shipped nginx recipe every request comes from 127.0.0.1, and nginx names the client.


def log_in_through_proxy(client: Client, username: str, password: str, *, client_addr: str,
                         peer: str = "127.0.0.1"):
    return client.post(LOGIN, {"username": username, "password": password}, REMOTE_ADDR=peer,
                       HTTP_X_FORWARDED_FOR=client_addr)


def test_behind_the_proxy_one_clients_failures_do_not_lock_out_another(settings, admin_user: User):
    for _ in range(settings.LOGIN_FAILURE_LIMIT):
        log_in_through_proxy(Client(), admin_user.username, "guess", client_addr="203.0.113.5")
    refused = log_in_through_proxy(Client(), admin_user.username, PASSWORD, client_addr="203.0.113.5")
    assert THROTTLED in refused.content.decode()

    assert log_in_through_proxy(Client(), admin_user.username, PASSWORD, client_addr="203.0.113.6").status_code == 302
    assert THROTTLED not in log_in_through_proxy(Client(), admin_user.username, "guess",
                                                 client_addr="203.0.113.7").content.decode()


def test_an_untrusted_peer_cannot_pick_its_address_with_x_forwarded_for(settings, tenant_user: User):
    """A client reaching the app directly gains nothing from a new X-Forwarded-For on each try."""
    for number in range(settings.LOGIN_FAILURE_LIMIT):
        log_in_through_proxy(Client(), tenant_user.username, "guess", peer="198.51.100.20",
                             client_addr=f"203.0.113.{number}")
    response = log_in_through_proxy(Client(), tenant_user.username, PASSWORD, peer="198.51.100.20",
                                    client_addr="203.0.113.200")
    assert THROTTLED in response.content.decode()


def test_a_client_behind_the_proxy_cannot_pick_its_address_either(settings, tenant_user: User):
    """nginx appending to a forged header: only the hop nginx itself wrote is read."""
    for number in range(settings.LOGIN_FAILURE_LIMIT):
        log_in_through_proxy(Client(), tenant_user.username, "guess", client_addr=f"10.9.9.{number}, 203.0.113.5")
    response = log_in_through_proxy(Client(), tenant_user.username, PASSWORD, client_addr="10.9.9.99, 203.0.113.5")
    assert THROTTLED in response.content.decode()


def test_the_refusal_says_how_long_to_wait_from_when_the_window_opened(settings, monkeypatch, tenant_user: User):
    clock = [1_000_000.0]
    monkeypatch.setattr("time.time", lambda: clock[0])
    settings.LOGIN_FAILURE_WINDOW_SECONDS = 15 * 60
    for _ in range(settings.LOGIN_FAILURE_LIMIT):
        log_in(Client(), tenant_user.username, "guess")
        clock[0] += 60  # one failure a minute: the window still closes 15 minutes after the first

    clock[0] = 1_000_000.0 + 11 * 60
    response = log_in(Client(), tenant_user.username, PASSWORD)
    assert "Too many failed sign-ins from your address. Try again in 4 minutes." in response.content.decode()
    clock[0] = 1_000_000.0 + 14 * 60 + 30
    assert "Try again in 1 minute." in log_in(Client(), tenant_user.username, PASSWORD).content.decode()

    clock[0] = 1_000_000.0 + 15 * 60 + 1
    assert log_in(Client(), tenant_user.username, PASSWORD).status_code == 302


def test_logout_refuses_get_and_keeps_the_session(tenant_user: User):
    client = client_for(tenant_user)
    response = client.get("/accounts/logout/")
    assert response.status_code == 405
    assert client.get("/domains/").status_code == 200


def test_logout_by_post_ends_the_session(tenant_user: User):
    client = client_for(tenant_user)
    response = client.post("/accounts/logout/")
    assert response.status_code == 302
    assert response["Location"] == LOGIN
    after = client.get("/domains/")
    assert after.status_code == 302
    assert after["Location"].startswith(LOGIN)


def test_every_page_offers_logout_as_a_post_form(tenant_user: User):
    body = client_for(tenant_user).get("/audit/").content.decode()
    assert '<form method="post" action="/accounts/logout/"' in body


def test_admin_role_makes_a_staff_superuser(admin_user: User):
    admin_user.refresh_from_db()
    assert admin_user.is_staff and admin_user.is_superuser
    assert client_for(admin_user).get("/admin/").status_code == 200


def test_a_superuser_created_from_the_shell_is_an_admin(db: None):
    user = User.objects.create_superuser(username="root-like", password=PASSWORD)
    user.refresh_from_db()
    assert user.role == User.Role.ADMIN
    assert user.is_admin


@pytest.mark.parametrize("fixture", ["tenant_user", "operator_user"])
def test_tenants_and_operators_are_not_staff(fixture: str, request: pytest.FixtureRequest):
    user: User = request.getfixturevalue(fixture)
    user.refresh_from_db()
    assert not user.is_staff and not user.is_superuser
    response = client_for(user).get("/admin/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_an_admin_demoted_with_its_flags_cleared_becomes_a_tenant(admin_user: User):
    admin_user.role, admin_user.is_superuser, admin_user.is_staff = User.Role.TENANT, False, False
    admin_user.save()
    admin_user.refresh_from_db()
    assert admin_user.role == User.Role.TENANT
    assert not admin_user.is_staff
    assert client_for(admin_user).get("/hosts/").status_code == 404


def test_the_hosts_link_is_only_shown_to_admins(admin_user: User, tenant_user: User):
    assert 'href="/hosts/"' in client_for(admin_user).get("/audit/").content.decode()
    assert 'href="/hosts/"' not in client_for(tenant_user).get("/audit/").content.decode()
