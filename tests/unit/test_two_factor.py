"""TOTP two-factor sign-in: enrolling from the account's page, the code after the password, admins made to enrol."""

from __future__ import annotations

import re
import time

import pytest
from django.core.cache import cache
from django.test import Client
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import User
from accounts.sessions import session_user
from api import services as api_services
from audit.models import AuditEntry
from tests.conftest import PASSWORD, client_for
from tests.support.totp import Authenticator

LOGIN, CODE, TWO_FACTOR = "/accounts/login/", "/accounts/login/code/", "/accounts/two-factor/"
WRONG_CODE = "That code is not the one your authenticator shows now."
WRONG_RECOVERY_CODE = "That is not one of your unused recovery codes."
RECOVERY_CODE = re.compile(r"<li><code>([a-z2-7]{4}(?:-[a-z2-7]{4}){3})</code></li>")


@pytest.fixture(autouse=True)
def fast_password_hashing(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def no_device_throttle(settings) -> None:
    """django-otp also refuses every code for a second after a wrong one (doubling each time): a person never
    types that fast, a test does. Our own throttle (the password's) stays on."""
    settings.OTP_TOTP_THROTTLE_FACTOR = 0


@pytest.fixture(autouse=True)
def empty_cache():
    cache.clear()
    yield
    cache.clear()


def enrol(user: User) -> Authenticator:
    return enrol_with_recovery_codes(user)[0]


def enrol_with_recovery_codes(user: User) -> tuple[Authenticator, list[str]]:
    """Through the page, as the user would: start, read the secret into an app, confirm with its code, and note
    the recovery codes the answer shows."""
    client = client_for(user)
    assert client.post(TWO_FACTOR, {"start": "1"}).status_code == 302
    page = client.get(TWO_FACTOR).content.decode()
    device = TOTPDevice.objects.get(user=user, confirmed=False)
    assert device.config_url in page.replace("&amp;", "&")  # the otpauth:// URI, as text
    assert "<svg" in page  # and as a QR code
    app = Authenticator(device.bin_key)
    confirmed = client.post(TWO_FACTOR, {"confirm": "1", "code": app.code()}, follow=True)
    assert "Two-factor sign-in is on" in confirmed.content.decode()
    return app, RECOVERY_CODE.findall(confirmed.content.decode())


def test_enrolling_shows_the_secret_and_turns_on_only_with_a_right_code(tenant_user: User):
    client = client_for(tenant_user)
    assert "Two-factor sign-in is off" in client.get(TWO_FACTOR).content.decode()
    client.post(TWO_FACTOR, {"start": "1"})
    app = Authenticator(TOTPDevice.objects.get(user=tenant_user).bin_key)
    page = client.get(TWO_FACTOR).content.decode()
    assert "otpauth://totp/" in page and 'id="totp-secret"' in page

    wrong = client.post(TWO_FACTOR, {"confirm": "1", "code": app.wrong_code()})
    assert wrong.status_code == 400
    assert WRONG_CODE in wrong.content.decode()
    assert not TOTPDevice.objects.filter(user=tenant_user, confirmed=True).exists()

    client.post(TWO_FACTOR, {"confirm": "1", "code": app.code()})
    assert TOTPDevice.objects.filter(user=tenant_user, confirmed=True).exists()
    assert list(AuditEntry.objects.filter(actor=tenant_user, action__startswith="otp.")
                .order_by("id").values_list("action", "result")) == [
        ("otp.enrol", "succeeded"), ("otp.confirm", "denied"), ("otp.confirm", "succeeded")]
    assert AuditEntry.objects.filter(action="otp.confirm").latest("id").message == "10 recovery codes made"


def test_sign_in_asks_for_the_code_after_the_password_and_logs_in_with_it(tenant_user: User):
    app = enrol(tenant_user)
    client = Client()
    password_step = client.post(LOGIN, {"username": tenant_user.username, "password": PASSWORD})
    assert password_step["Location"] == CODE
    assert client.get("/domains/").status_code == 302  # not logged in yet
    assert "Two-factor code" in client.get(CODE).content.decode()

    signed_in = client.post(CODE, {"code": app.code()})
    assert signed_in["Location"] == "/domains/"
    assert f"{tenant_user.username} (Tenant)" in client.get("/domains/").content.decode()
    entry = AuditEntry.objects.filter(action="login").latest("id")
    assert (entry.actor, entry.result) == (tenant_user, "succeeded")
    assert entry.message == "signed in with local password and a TOTP code"


def test_a_wrong_code_is_refused_audited_and_throttled_like_a_password(settings, tenant_user: User):
    settings.LOGIN_FAILURE_LIMIT = 2
    app = enrol(tenant_user)
    client = Client()
    client.post(LOGIN, {"username": tenant_user.username, "password": PASSWORD})
    for _ in range(settings.LOGIN_FAILURE_LIMIT):
        refused = client.post(CODE, {"code": app.wrong_code()})
        assert refused.status_code == 400
        assert WRONG_CODE in refused.content.decode()
    throttled = client.post(CODE, {"code": app.code()})  # even the right one, now
    assert "Too many failed sign-ins" in throttled.content.decode()
    assert client.get("/domains/").status_code == 302
    refusals = AuditEntry.objects.filter(action="login", actor=tenant_user, result="denied").order_by("id")
    assert list(refusals.values_list("result", "message")) == [
        ("denied", "refused: wrong TOTP code")] * 2 + [("denied", "refused: throttled")]


def test_giving_the_password_again_does_not_reset_the_count_of_wrong_codes(settings, tenant_user: User):
    settings.LOGIN_FAILURE_LIMIT = 2
    app = enrol(tenant_user)
    client = Client()
    for _ in range(settings.LOGIN_FAILURE_LIMIT):
        assert client.post(LOGIN, {"username": tenant_user.username, "password": PASSWORD})["Location"] == CODE
        assert client.post(CODE, {"code": app.wrong_code()}).status_code == 400
    again = client.post(LOGIN, {"username": tenant_user.username, "password": PASSWORD})
    assert "Too many failed sign-ins" in again.content.decode()


def test_the_code_step_expires(settings, tenant_user: User, monkeypatch):
    enrol(tenant_user)
    client = Client()
    client.post(LOGIN, {"username": tenant_user.username, "password": PASSWORD})
    later = time.time() + settings.SECOND_FACTOR_PENDING_SECONDS + 1
    monkeypatch.setattr(time, "time", lambda: later)
    page = client.get(CODE).content.decode()
    assert "the code was not given in time" in page and 'name="code"' not in page


def test_turning_it_off_needs_a_current_code(tenant_user: User):
    app = enrol(tenant_user)
    client = client_for(tenant_user)
    refused = client.post(TWO_FACTOR, {"remove": "1", "code": app.wrong_code()})
    assert WRONG_CODE in refused.content.decode()
    assert TOTPDevice.objects.filter(user=tenant_user).exists()
    off = client.post(TWO_FACTOR, {"remove": "1", "code": app.code()}, follow=True)
    assert "Two-factor sign-in is off." in off.content.decode()
    assert not TOTPDevice.objects.filter(user=tenant_user).exists()


def test_an_admin_without_a_device_must_enrol_before_anything_else(settings, admin_user: User, tenant_user: User):
    settings.REQUIRE_ADMIN_2FA = True
    admin = client_for(admin_user)
    for path in ("/domains/", "/hosts/", "/audit/", "/accounts/tokens/"):
        answer = admin.get(path)
        assert (answer.status_code, answer["Location"]) == (302, TWO_FACTOR), path
    assert admin.get("/domains/", headers={"HX-Request": "true"})["HX-Redirect"] == TWO_FACTOR
    page = admin.get(TWO_FACTOR).content.decode()
    assert "Admins must use two-factor sign-in here" in page
    assert client_for(tenant_user).get("/domains/").status_code == 200  # tenants are not forced
    # Websockets and consoles check the session outside a request: refused too, so live pages close.
    assert session_user(admin.session.session_key) is None

    enrol(admin_user)
    assert admin.get("/domains/").status_code == 200
    assert session_user(admin.session.session_key) == admin_user


def test_the_admin_sites_own_login_form_cannot_skip_the_code(admin_user: User, tenant_user: User):
    enrol(admin_user)
    client = Client()
    page = client.get("/admin/login/?next=/admin/auth/group/")
    assert page["Location"] == "/accounts/login/?next=/admin/auth/group/"
    posted = client.post("/admin/login/", {"username": admin_user.username, "password": PASSWORD})
    assert posted["Location"].startswith("/accounts/login/")
    assert client.get("/admin/")["Location"].startswith("/admin/login/")  # still nobody
    assert client_for(tenant_user).get("/admin/login/").status_code == 404


def test_api_tokens_are_not_affected_by_two_factor_sign_in(settings, admin_user: User):
    """A token is a second secret already, made by a signed-in user: the API answers it with or without a device."""
    settings.REQUIRE_ADMIN_2FA = True
    _token, text = api_services.token_create(actor=admin_user, name="ci")
    answer = Client(headers={"Authorization": f"Bearer {text}"}).get("/api/v1/hosts/")
    assert answer.status_code == 200


def test_enrolling_shows_ten_recovery_codes_once_and_keeps_only_their_hashes(tenant_user: User):
    _app, codes = enrol_with_recovery_codes(tenant_user)
    assert len(set(codes)) == 10
    page = client_for(tenant_user).get(TWO_FACTOR).content.decode()
    assert "You have 10 unused recovery codes." in page
    assert not RECOVERY_CODE.search(page)
    stored = set(StaticToken.objects.filter(device__user=tenant_user).values_list("token", flat=True))
    assert len(stored) == 10
    assert not stored & {*codes, *(code.replace("-", "") for code in codes)}


def sign_in_with_code(client: Client, user: User, code: str):
    assert client.post(LOGIN, {"username": user.username, "password": PASSWORD})["Location"] == CODE
    return client.post(CODE, {"code": code}, follow=True)


def test_a_recovery_code_signs_in_once_and_says_how_many_are_left(settings, tenant_user: User):
    settings.LOGIN_FAILURE_LIMIT = 2
    _app, codes = enrol_with_recovery_codes(tenant_user)
    # Typed as a person might copy it: upper case, spaces for dashes.
    signed_in = sign_in_with_code(Client(), tenant_user, codes[3].upper().replace("-", " "))
    assert f"{tenant_user.username} (Tenant)" in signed_in.content.decode()
    assert "You signed in with a recovery code; 9 are left." in signed_in.content.decode()
    assert AuditEntry.objects.filter(action="login").latest("id").message == (
        "signed in with local password and a recovery code (9 left)")

    again = Client()
    assert again.post(LOGIN, {"username": tenant_user.username, "password": PASSWORD})["Location"] == CODE
    for _ in range(settings.LOGIN_FAILURE_LIMIT):
        refused = again.post(CODE, {"code": codes[3]})  # used already
        assert refused.status_code == 400
        assert WRONG_RECOVERY_CODE in refused.content.decode()
    throttled = again.post(CODE, {"code": codes[4]})  # an unused one, now too late: the same count as passwords
    assert "Too many failed sign-ins" in throttled.content.decode()
    assert again.get("/domains/").status_code == 302
    assert list(AuditEntry.objects.filter(action="login", result="denied").order_by("id")
                .values_list("message", flat=True)) == [
        "refused: wrong recovery code"] * 2 + ["refused: throttled"]


def test_new_recovery_codes_need_a_current_code_and_replace_the_old_ones(tenant_user: User):
    app, old_codes = enrol_with_recovery_codes(tenant_user)
    client = client_for(tenant_user)
    refused = client.post(TWO_FACTOR, {"recovery": "1", "code": app.wrong_code()})
    assert refused.status_code == 400 and WRONG_CODE in refused.content.decode()
    made = client.post(TWO_FACTOR, {"recovery": "1", "code": app.code()}).content.decode()
    assert "New recovery codes made: the old ones no longer work." in made
    new_codes = RECOVERY_CODE.findall(made)
    assert len(new_codes) == 10 and not set(new_codes) & set(old_codes)
    assert WRONG_RECOVERY_CODE in sign_in_with_code(Client(), tenant_user, old_codes[0]).content.decode()
    assert list(AuditEntry.objects.filter(action="otp.recovery_codes").order_by("id").values_list("result", flat=True)
                ) == ["denied", "succeeded"]


def test_after_losing_the_authenticator_a_recovery_code_turns_two_factor_sign_in_off(tenant_user: User):
    _app, codes = enrol_with_recovery_codes(tenant_user)
    client = Client()
    sign_in_with_code(client, tenant_user, codes[0])
    off = client.post(TWO_FACTOR, {"remove": "1", "code": codes[1]}, follow=True)
    assert "Two-factor sign-in is off." in off.content.decode()
    assert not StaticToken.objects.exists() and not TOTPDevice.objects.exists()
    # The next sign-in asks for no code: no recovery codes are left behind that would count as a device.
    assert Client().post(LOGIN, {"username": tenant_user.username, "password": PASSWORD})["Location"] == "/domains/"
