"""Signing in as an organisation does, in Chromium: OpenID Connect at a real provider (node-oidc-provider, started
here), LDAP over StartTLS against Debian's slapd (started here), and a TOTP or recovery code after the password.

One portal for the module, configured for both; a provider or slapd that cannot start fails the tests.
"""

from __future__ import annotations

import re
import subprocess
from base64 import b32decode
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import _FAILED as FAILED
from tests.e2e.conftest import REPO, RESULTS_DIR, TIMEOUT_MS
from tests.support.consoles import ConsoleStack
from tests.support.portal import free_port, stop_process, wait_for_port
from tests.support.slapd import (
    ADMINS_GROUP,
    BIND_DN,
    BIND_PASSWORD,
    GROUPS,
    PEOPLE,
    TENANTS_GROUP,
    USERS,
    Slapd,
    slapd,  # noqa: F401 - a fixture
)
from tests.support.totp import Authenticator

pytestmark = pytest.mark.e2e

PROVIDER_NAME = "Example ID"


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory, slapd: Slapd) -> Iterator[ConsoleStack]:  # noqa: F811
    directory = tmp_path_factory.mktemp("sign-in")
    portal_port, provider_port = free_port(), free_port()
    log = directory / "oidc-provider.log"
    with log.open("wb") as output:
        provider = subprocess.Popen(
            ["node", str(REPO / "tests/support/oidc_provider.mjs"), str(provider_port),
             f"http://127.0.0.1:{portal_port}/accounts/login/oidc/callback/",
             f"http://127.0.0.1:{portal_port}/accounts/login/"],
            cwd=REPO, stdout=output, stderr=subprocess.STDOUT)
    stack = ConsoleStack(directory / "var", settings={
        "NO_PROXY": "127.0.0.1,localhost",  # the portal asks the provider directly, whatever the environment says
        "VMPORTAL_OIDC_ISSUER": f"http://127.0.0.1:{provider_port}", "VMPORTAL_OIDC_NAME": PROVIDER_NAME,
        "VMPORTAL_OIDC_CLIENT_ID": "vmportal", "VMPORTAL_OIDC_CLIENT_SECRET": "vmportal-oidc-secret",
        "VMPORTAL_OIDC_SCOPES": "openid email profile groups",
        "VMPORTAL_OIDC_ROLE_GROUPS": "admin=vm-admins;operator=vm-operators",
        "VMPORTAL_LDAP_URI": slapd.uri, "VMPORTAL_LDAP_BIND_DN": BIND_DN, "VMPORTAL_LDAP_BIND_PASSWORD": BIND_PASSWORD,
        "VMPORTAL_LDAP_START_TLS": "1", "VMPORTAL_LDAP_CA_FILE": str(slapd.ca_file),
        "VMPORTAL_LDAP_USER_BASE": PEOPLE, "VMPORTAL_LDAP_GROUP_BASE": GROUPS,
        "VMPORTAL_LDAP_ROLE_GROUPS": f"admin={ADMINS_GROUP};tenant={TENANTS_GROUP}",
    })
    (directory / "var").mkdir()
    try:
        try:
            wait_for_port(provider_port, provider, log, timeout=30)
        except RuntimeError as error:
            pytest.fail(f"the OpenID Connect provider did not start: {error}")
        stack.manage("migrate", "--noinput", "-v", "0")
        stack.daphne(portal_port)
        stack.settings["url"] = f"http://127.0.0.1:{portal_port}"
        yield stack
    finally:
        stack.stop()
        stop_process(provider)


@pytest.fixture
def page(browser: Browser, portal: ConsoleStack, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh context on the module's portal; a screenshot in test-results/ if the test fails."""
    context = browser.new_context(base_url=portal.settings["url"], viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    # The provider's development pages import a web font; nothing here may leave the machine, and waiting for
    # that lookup to fail costs seconds per page.
    context.route(re.compile(r"^https?://(?!127\.0\.0\.1[:/])"), lambda route: route.abort())
    page = context.new_page()
    yield page
    if request.node.stash.get(FAILED, False):
        RESULTS_DIR.mkdir(exist_ok=True)
        page.screenshot(path=str(RESULTS_DIR / f"{request.node.name}.png"), full_page=True)
    context.close()


def sign_in_with_password(page: Page, username: str, password: str) -> None:
    page.goto("/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.get_by_role("button", name="Log in").click()


def sign_in_with_a_code(page: Page, username: str, code: str) -> None:
    sign_in_with_password(page, username, USERS[username][0])
    page.wait_for_url(re.compile(r"/accounts/login/code/"))
    page.get_by_label("Code from your authenticator app, or a recovery code").fill(code)
    page.get_by_role("button", name="Verify").click()


def sign_in_at_the_provider(page: Page, username: str) -> None:
    page.get_by_role("link", name=f"Sign in with {PROVIDER_NAME}").click()
    page.wait_for_url(re.compile(r"127\.0\.0\.1:\d+/interaction/"))  # the provider's own sign-in page
    page.fill("input[name=login]", username)
    page.fill("input[name=password]", "anything")
    page.get_by_role("button", name="Sign-in").click()
    page.get_by_role("button", name="Continue").click()  # the provider's consent
    page.wait_for_url(re.compile(r"/domains/"))


def test_single_sign_on_at_the_provider_lands_on_the_vm_list_with_the_mapped_role(page: Page):
    page.goto("/accounts/login/")
    RESULTS_DIR.mkdir(exist_ok=True)
    page.screenshot(path=str(RESULTS_DIR / "sign-in-login-page.png"), full_page=True)
    sign_in_at_the_provider(page, "olga")
    expect(page.locator("header")).to_contain_text("olga (Operator)")


def test_signing_out_signs_out_at_the_provider_too(page: Page):
    page.goto("/accounts/login/")
    sign_in_at_the_provider(page, "olga")
    page.get_by_role("button", name="Log out").click()
    page.get_by_role("button", name="Yes, sign me out").click()  # the provider's own confirmation
    page.wait_for_url(re.compile(r"/accounts/login/$"))
    # Back at the provider, it asks who is signing in: its session ended with ours.
    page.get_by_role("link", name=f"Sign in with {PROVIDER_NAME}").click()
    page.wait_for_url(re.compile(r"127\.0\.0\.1:\d+/interaction/"))
    expect(page.locator("input[name=password]")).to_be_visible()


def test_an_ldap_admin_signs_in_through_the_login_form(page: Page):
    sign_in_with_password(page, "ada", USERS["ada"][0])
    page.wait_for_url(re.compile(r"/domains/"))
    expect(page.locator("header")).to_contain_text("ada (Admin)")


def test_an_ldap_user_turns_on_two_factor_sign_in_and_then_signs_in_with_a_code(page: Page):
    """The code comes after any first factor: here the directory's password."""
    sign_in_with_password(page, "tom", USERS["tom"][0])
    page.wait_for_url(re.compile(r"/domains/"))
    page.get_by_role("link", name="Two-factor sign-in").click()
    page.get_by_role("button", name="Set up an authenticator app").click()
    expect(page.locator(".totp-qr svg")).to_be_visible()
    RESULTS_DIR.mkdir(exist_ok=True)
    page.screenshot(path=str(RESULTS_DIR / "sign-in-two-factor-enrol.png"), full_page=True)
    app = Authenticator(b32decode(page.locator("#totp-secret").inner_text()))
    page.get_by_label("Code from your authenticator app").fill(app.code())
    page.get_by_role("button", name="Turn on").click()
    expect(page.locator("#messages")).to_contain_text("Two-factor sign-in is on")
    expect(page.locator("#recovery-codes li")).to_have_count(10)
    page.screenshot(path=str(RESULTS_DIR / "sign-in-recovery-codes.png"), full_page=True)
    recovery_codes = page.locator("#recovery-codes code").all_inner_texts()
    page.get_by_role("button", name="Log out").click()

    sign_in_with_a_code(page, "tom", app.code())
    page.wait_for_url(re.compile(r"/domains/"))
    expect(page.locator("header")).to_contain_text("tom (Tenant)")
    page.get_by_role("button", name="Log out").click()

    # The authenticator lost: a recovery code signs in once, and the page says how many are left.
    sign_in_with_a_code(page, "tom", recovery_codes[0])
    page.wait_for_url(re.compile(r"/domains/"))
    expect(page.locator("#messages")).to_contain_text("You signed in with a recovery code; 9 are left.")
    page.get_by_role("button", name="Log out").click()
    sign_in_with_a_code(page, "tom", recovery_codes[0])
    expect(page.locator("main")).to_contain_text("That is not one of your unused recovery codes.")
    expect(page).to_have_url(re.compile(r"/accounts/login/code/"))
