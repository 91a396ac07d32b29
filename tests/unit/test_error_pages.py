"""Failures are pages inside the site's layout that say why, with a way back; never a bare 500."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import libvirt
import pytest
from django.test import Client

from accounts.models import User
from domains.models import Grant, Host
from domains.virt.connections import translate
from tests.conftest import TEST_DOMAIN_UUID, client_for
from tests.unit.test_virt_errors import KERNEL, libvirt_error

VM_PAGE = f"/domains/embedded/{TEST_DOMAIN_UUID}/"
HTMX = {"HX-Request": "true"}


@pytest.fixture(autouse=True)
def fast_password_hashing(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def in_the_layout(body: str) -> bool:
    """The site's own page: its top bar, and a link back to the machines."""
    return '<header class="topbar">' in body and 'href="/domains/?all"' in body


def error_text(body: str) -> str:
    [text] = re.findall(r'<p class="message error">(.*?)</p>', body, re.S)
    return text


@pytest.fixture
def down_host(tenant_user: User, closed_loopback_uri: str) -> Host:
    """A host that refuses connections, with the tenant's VM on it (operate right)."""
    host = Host.objects.create(name="down", uri=closed_loopback_uri)
    Grant.objects.create(host=host, domain_uuid=TEST_DOMAIN_UUID, user=tenant_user, can_operate=True)
    return host


@pytest.mark.parametrize("method", ["get", "post"])
def test_the_display_page_of_an_unreachable_host_says_so_with_a_way_back(admin_user: User, tenant_user: User,
                                                                       down_host: Host, method: str):
    port = str(urlsplit(down_host.uri).port)
    for user, sees_why in ((admin_user, True), (tenant_user, False)):
        response = getattr(client_for(user), method)(
            f"/domains/down/{TEST_DOMAIN_UUID}/display/", HTTP_REFERER=f"http://testserver/domains/down/{TEST_DOMAIN_UUID}/")
        assert response.status_code == 503
        body = response.content.decode()
        assert in_the_layout(body)
        assert "<h1>Host unreachable</h1>" in body
        assert error_text(body).startswith("Host down: The host cannot be reached right now.")
        assert ("Connection refused" in body) is sees_why
        assert (f"127.0.0.1:{port}" in body) is sees_why
        assert f'href="http://testserver/domains/down/{TEST_DOMAIN_UUID}/" data-action="back"' in body


def test_the_way_back_never_leads_off_the_site(admin_user: User, down_host: Host):
    response = client_for(admin_user).get(f"/domains/down/{TEST_DOMAIN_UUID}/", HTTP_REFERER="https://evil.example/")
    assert response.status_code == 503
    assert "evil.example" not in response.content.decode()
    assert 'data-action="back"' not in response.content.decode()


@pytest.fixture
def kernel_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The VM page's libvirt call fails as QEMU does when a direct-boot kernel is gone (lab-measured)."""
    def fail(uri: str, uuid: str) -> None:
        raise translate(libvirt_error(libvirt.VIR_ERR_INTERNAL_ERROR, libvirt.VIR_FROM_QEMU, KERNEL))

    monkeypatch.setattr("domains.selectors.virt.domain_details", fail)


def test_a_libvirt_error_no_view_caught_is_a_page_that_says_why(admin_user: User, tenant_user: User,
                                                                tenant_grant: Grant, kernel_missing: None):
    admin = client_for(admin_user).get(VM_PAGE)
    assert admin.status_code == 502
    assert in_the_layout(admin.content.decode())
    assert "could not open kernel file &#x27;/var/lib/vmportal-lab/shared/vmlinuz-gone&#x27;" in \
        error_text(admin.content.decode())

    tenant = client_for(tenant_user).get(VM_PAGE)
    assert tenant.status_code == 502
    assert error_text(tenant.content.decode()) == (
        "Host embedded: The hypervisor could not complete the request. libvirt: internal error: process exited "
        "while connecting to monitor: qemu: could not open kernel file [host path]: No such file or directory")


def test_an_htmx_request_gets_the_message_out_of_band_and_keeps_its_page(tenant_user: User, tenant_grant: Grant,
                                                                         kernel_missing: None):
    response = client_for(tenant_user).get(VM_PAGE, headers=HTMX)
    assert response.status_code == 200  # htmx swaps nothing on an error status, out-of-band parts included
    assert response["HX-Reswap"] == "none"
    body = response.content.decode()
    assert body.startswith('<div id="messages" role="status" hx-swap-oob="true">')
    assert "could not open kernel file [host path]" in body
    assert "<html" not in body


def test_an_unknown_page_is_a_404_in_the_layout_with_the_menu(tenant_user: User):
    response = client_for(tenant_user).get("/no/such/page/")
    assert response.status_code == 404
    body = response.content.decode()
    assert in_the_layout(body)
    assert 'href="/audit/">Audit log</a>' in body  # the signed-in user's menu
    assert error_text(body) == "There is nothing here, or nothing you may see."


def test_a_refused_action_is_a_403_in_the_layout_that_says_why(other_tenant_user: User, embedded_host: Host):
    Grant.objects.create(host=embedded_host, domain_uuid=TEST_DOMAIN_UUID, user=other_tenant_user)  # view only
    response = client_for(other_tenant_user).post(f"{VM_PAGE}action/", {"action": "pause"})
    assert response.status_code == 403
    assert in_the_layout(response.content.decode())
    assert error_text(response.content.decode()) == "You may view this machine but not act on it."


def test_a_crash_is_a_500_in_the_layout_with_a_way_back(admin_user: User, embedded_host: Host,
                                                        monkeypatch: pytest.MonkeyPatch):
    def crash(**_: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("domains.views.selectors.domain_page", crash)
    client = Client(raise_request_exception=False)
    client.force_login(admin_user)
    response = client.get(VM_PAGE)
    assert response.status_code == 500
    body = response.content.decode()
    assert in_the_layout(body)
    assert "a bug" not in body and "Traceback" not in body
    assert error_text(body) == "The dashboard could not answer this request; it has been logged."
