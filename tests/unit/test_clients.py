"""The client address behind trusted proxies: one answer for audit rows, the login throttle and the console proxy."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.urls import reverse

from accounts.models import User
from audit.models import AuditEntry
from consoles.proxy import ConsoleRequestHandler
from domains.models import Grant, Host
from tests.conftest import TEST_DOMAIN_UUID, client_for
from vmportal.clients import client_address

LOOPBACK = ["127.0.0.1", "::1"]


@pytest.mark.parametrize(("peer", "forwarded_for", "trusted", "expected"), [
    # Straight from the client: its header is its own say-so.
    ("198.51.100.7", "203.0.113.9", LOOPBACK, "198.51.100.7"),
    ("198.51.100.7", None, LOOPBACK, "198.51.100.7"),
    # From the local nginx: the hop it wrote.
    ("127.0.0.1", "203.0.113.9", LOOPBACK, "203.0.113.9"),
    ("::1", "2001:db8::5", LOOPBACK, "2001:db8::5"),
    # A client that sent its own header, which nginx appended to: only the rightmost hop is nginx's.
    ("127.0.0.1", "10.0.0.1, 203.0.113.9", LOOPBACK, "203.0.113.9"),
    # Two proxies (a load balancer in 10.0.0.0/8, then nginx): skip both, stop at the first stranger.
    ("127.0.0.1", "192.0.2.1, 203.0.113.9, 10.1.2.3", [*LOOPBACK, "10.0.0.0/8"], "203.0.113.9"),
    # Only proxies in the chain: the farthest of them.
    ("127.0.0.1", "10.1.2.3", [*LOOPBACK, "10.0.0.0/8"], "10.1.2.3"),
    # Garbage stops the walk at the last hop that could be vouched for.
    ("127.0.0.1", "203.0.113.9, not-an-address", LOOPBACK, "127.0.0.1"),
    ("127.0.0.1", "", LOOPBACK, "127.0.0.1"),
    ("127.0.0.1", "203.0.113.9,", LOOPBACK, "127.0.0.1"),
    # Ports, brackets and IPv4 on a dual-stack socket, as proxies and servers write them.
    ("127.0.0.1", "203.0.113.9:51234", LOOPBACK, "203.0.113.9"),
    ("127.0.0.1", "[2001:db8::7]:443", LOOPBACK, "2001:db8::7"),
    ("::ffff:127.0.0.1", "203.0.113.9", LOOPBACK, "203.0.113.9"),
    ("::ffff:198.51.100.7", "203.0.113.9", LOOPBACK, "198.51.100.7"),
    # No peer, or none that parses: nothing to say.
    (None, "203.0.113.9", LOOPBACK, None),
    ("unix-socket", "203.0.113.9", LOOPBACK, None),
    # Trusting nobody means reading no header.
    ("127.0.0.1", "203.0.113.9", [], "127.0.0.1"),
])
def test_client_address(peer: str | None, forwarded_for: str | None, trusted: list[str], expected: str | None):
    assert client_address(peer=peer, forwarded_for=forwarded_for, trusted=trusted) == expected


def test_the_trusted_proxies_come_from_the_one_setting(settings):
    settings.TRUSTED_PROXIES = frozenset({"192.0.2.0/24"})
    assert client_address(peer="192.0.2.50", forwarded_for="203.0.113.9") == "203.0.113.9"
    assert client_address(peer="127.0.0.1", forwarded_for="203.0.113.9") == "127.0.0.1"


def test_a_bad_trusted_proxy_entry_is_a_configuration_error(settings):
    settings.TRUSTED_PROXIES = frozenset({"nginx.internal"})
    with pytest.raises(ImproperlyConfigured, match="nginx.internal"):
        client_address(peer="127.0.0.1", forwarded_for="203.0.113.9")


def test_an_audit_row_names_the_client_behind_the_proxy_not_the_proxy(tenant_user: User, embedded_host: Host):
    client_for(tenant_user).post(reverse("domains:host-delete", args=["embedded"]), REMOTE_ADDR="127.0.0.1",
                                 HTTP_X_FORWARDED_FOR="203.0.113.44")
    client_for(tenant_user).post(reverse("domains:host-delete", args=["embedded"]), REMOTE_ADDR="198.51.100.3",
                                 HTTP_X_FORWARDED_FOR="203.0.113.45")
    addresses = list(AuditEntry.objects.filter(actor=tenant_user).order_by("id").values_list("client_addr", flat=True))
    assert addresses == ["203.0.113.44", "198.51.100.3"]


def test_a_grant_saved_in_the_admin_site_audits_the_client_behind_the_proxy(admin_user: User, tenant_user: User,
                                                                            embedded_host: Host):
    response = client_for(admin_user).post(
        "/admin/domains/grant/add/",
        {"host": embedded_host.pk, "domain_uuid": TEST_DOMAIN_UUID, "user": tenant_user.pk},
        REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.50")
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Grant.objects.filter(user=tenant_user).exists()
    entry = AuditEntry.objects.get(actor=admin_user, action="grant.save")
    assert entry.client_addr == "203.0.113.50"


@pytest.mark.parametrize(("peer", "expected"), [("127.0.0.1", "203.0.113.60"), ("198.51.100.9", "198.51.100.9")])
def test_the_console_proxy_reads_the_client_address_the_same_way(peer: str, expected: str):
    handler = SimpleNamespace(client_address=(peer, 40000), headers={"X-Forwarded-For": "203.0.113.60"})
    assert ConsoleRequestHandler.client_ip(handler) == expected  # type: ignore[arg-type]
