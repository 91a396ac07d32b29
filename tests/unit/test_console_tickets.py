"""Console tickets through websockify's plugin interfaces, on a libvirt test-driver host with displays.

The plugins are called exactly as websockify calls them: `lookup(token)` then
`authenticate(headers, target_host, target_port)`; a refusal is websockify's AuthenticationError (403).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
from django.contrib.sessions.models import Session
from django.test import Client
from django.utils import timezone
from websockify.auth_plugins import AuthenticationError

from accounts.models import User
from accounts.sessions import session_user
from audit.models import AuditEntry
from consoles import services
from consoles.models import ConsoleTicket
from consoles.proxy import ConsoleAuthPlugin, ConsoleTokenPlugin, MaskTickets
from domains import virt
from domains.models import Grant, Host
from tests.conftest import client_for

VNC_UUID = "0c0a0e00-0000-4000-8000-000000000001"
SPICE_UUID = "0c0a0e00-0000-4000-8000-000000000002"
BARE_UUID = "0c0a0e00-0000-4000-8000-000000000003"
OTHER_UUID = "0c0a0e00-0000-4000-8000-000000000004"
SOCKET_UUID = "0c0a0e00-0000-4000-8000-000000000005"
ORIGIN = "http://127.0.0.1:8000"  # the console page's, as bin/run serves it: the proxy listens on :6080


def _domain(name: str, uuid: str, graphics: str) -> str:
    return (f"<domain type='test'><name>{escape(name)}</name><uuid>{uuid}</uuid><memory>65536</memory><vcpu>1</vcpu>"
            f"<os><type>hvm</type></os><devices>{graphics}</devices></domain>")


def _vnc(port: int) -> str:
    return f"<graphics type='vnc' port='{port}' autoport='no'><listen type='address' address='127.0.0.1'/></graphics>"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: pytest.FixtureRequest) -> None:
    """Users are created per test; the production hasher's cost is not what these tests measure."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # type: ignore[attr-defined]


@pytest.fixture
def console_host(db: None, tmp_path: Path) -> Host:
    path = tmp_path / "consoles.xml"
    path.write_text("<node>" + "".join([
        _domain("vm-vnc", VNC_UUID, _vnc(5907)),
        _domain("vm-spice", SPICE_UUID,
                "<graphics type='spice' port='5908' autoport='no'><listen type='address' address='127.0.0.1'/>"
                "</graphics>"),
        _domain("vm-bare", BARE_UUID, ""),
        _domain("<b>vm-other<b>", OTHER_UUID, _vnc(5909)),
        _domain("vm-socket", SOCKET_UUID, "<graphics type='vnc'><listen type='socket' socket='/run/vm-socket.vnc'/>"
                "</graphics>"),
    ]) + "</node>")
    return Host.objects.create(name="consoles", uri=f"test://{path}")


@pytest.fixture
def tenant(console_host: Host, tenant_user: User) -> User:
    """May open the console of vm-vnc and vm-spice; may only view vm-other."""
    for uuid in (VNC_UUID, SPICE_UUID):
        Grant.objects.create(host=console_host, domain_uuid=uuid, user=tenant_user, can_console=True)
    Grant.objects.create(host=console_host, domain_uuid=OTHER_UUID, user=tenant_user)
    return tenant_user


def session_cookie(client: Client) -> str:
    return f"csrftoken=x; sessionid={client.cookies['sessionid'].value}"


def issue(client: Client, uuid: str = VNC_UUID, *, page: str = ORIGIN) -> list[str]:
    """Tickets as the console page at origin `page` asks for them."""
    scheme, host = page.split("://")
    response = client.post(f"/consoles/consoles/{uuid}/tickets/", HTTP_HOST=host, secure=scheme == "https")
    assert response.status_code == 200, response.content
    return list(response.json()["tickets"])


def open_console(token: str, *, cookie: str, origin: str | None = ORIGIN) -> tuple[str, int | None]:
    """What websockify does for one websocket upgrade; returns the address and port the proxy connects to."""
    tickets = ConsoleTokenPlugin()
    tickets.client_addr = "192.0.2.7"
    auth = ConsoleAuthPlugin(tickets)
    target = tickets.lookup(token)
    headers = {"Cookie": cookie} | ({"Origin": origin} if origin is not None else {})
    auth.authenticate(headers=headers, target_host=target[0], target_port=target[1])
    assert auth.console is not None
    return auth.console.endpoint.address, auth.console.endpoint.port


@pytest.fixture
def tenant_client(tenant: User) -> Client:
    return client_for(tenant)


def refused(call: Callable[[], object]) -> str:
    with pytest.raises(AuthenticationError) as caught:
        call()
    assert caught.value.code == 403
    return str(caught.value)


def test_a_ticket_opens_its_console_once(tenant_client: Client) -> None:
    [token] = issue(tenant_client)
    cookie = session_cookie(tenant_client)
    assert open_console(token, cookie=cookie) == ("127.0.0.1", 5907)
    assert "already used" in refused(lambda: open_console(token, cookie=cookie))


def test_two_racing_websockets_with_one_ticket_open_one_console(tenant_client: Client) -> None:
    [token] = issue(tenant_client)
    cookie = session_cookie(tenant_client)
    first, second = ConsoleTokenPlugin(), ConsoleTokenPlugin()
    target = first.lookup(token)
    assert second.lookup(token) == target  # both looked before either consumed
    ConsoleAuthPlugin(first).authenticate(headers={"Origin": ORIGIN, "Cookie": cookie},
                                          target_host=target[0], target_port=target[1])
    assert "already used or expired" in refused(lambda: ConsoleAuthPlugin(second).authenticate(
        headers={"Origin": ORIGIN, "Cookie": cookie}, target_host=target[0], target_port=target[1]))


def test_a_ticket_not_opened_in_time_is_refused(tenant_client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    [token] = issue(tenant_client)
    later = timezone.now() + timedelta(seconds=60)
    monkeypatch.setattr(services.timezone, "now", lambda: later)
    assert "expired" in refused(lambda: open_console(token, cookie=session_cookie(tenant_client)))


def test_tickets_live_under_a_minute_and_only_as_a_hash(tenant_client: Client) -> None:
    [token] = issue(tenant_client)
    ticket = ConsoleTicket.objects.get()
    assert ticket.expires_at - ticket.issued_at < timedelta(seconds=60)
    assert ticket.token_hash == services.hash_token(token) != token
    assert len(token) >= 22  # >= 128 bits in URL-safe base64 (ours: 256 bits, 43 characters)
    stored = " ".join(str(value) for value in ConsoleTicket.objects.values().get().values())
    assert token not in stored
    assert token not in " ".join(AuditEntry.objects.values_list("message", flat=True))


def test_another_users_session_cannot_use_the_ticket(tenant_client: Client, other_tenant_user: User,
                                                     console_host: Host) -> None:
    Grant.objects.create(host=console_host, domain_uuid=VNC_UUID, user=other_tenant_user, can_console=True)
    [token] = issue(tenant_client)
    thief = client_for(other_tenant_user)
    assert "no session of the ticket's user" in refused(lambda: open_console(token, cookie=session_cookie(thief)))
    assert "no session" in refused(lambda: open_console(token, cookie="sessionid=forged"))
    assert "no session" in refused(lambda: open_console(token, cookie=""))
    # The refusals consumed nothing: the owner still opens it.
    assert open_console(token, cookie=session_cookie(tenant_client)) == ("127.0.0.1", 5907)


def test_no_ticket_for_a_vm_without_the_console_right(tenant_client: Client, other_tenant_user: User) -> None:
    assert tenant_client.post(f"/consoles/consoles/{OTHER_UUID}/tickets/").status_code == 404  # view only
    assert tenant_client.post(f"/consoles/consoles/{BARE_UUID}/tickets/").status_code == 404  # not granted
    assert client_for(other_tenant_user).post(f"/consoles/consoles/{VNC_UUID}/tickets/").status_code == 404
    assert Client().post(f"/consoles/consoles/{VNC_UUID}/tickets/").status_code == 302  # to the login page
    assert tenant_client.get(f"/consoles/consoles/{VNC_UUID}/tickets/").status_code == 405
    assert not ConsoleTicket.objects.exists()
    denied = AuditEntry.objects.filter(action="console.ticket", result=AuditEntry.Result.DENIED)
    assert denied.count() == 3


def test_a_ticket_only_reaches_the_vm_it_was_issued_for(tenant_client: Client) -> None:
    vnc, spice = issue(tenant_client, VNC_UUID)[0], issue(tenant_client, SPICE_UUID)
    cookie = session_cookie(tenant_client)
    assert open_console(vnc, cookie=cookie) == ("127.0.0.1", 5907)
    assert len(spice) == services.TICKETS_PER_KIND["spice"]  # one per SPICE channel, each single use
    assert {open_console(token, cookie=cookie) for token in spice} == {("127.0.0.1", 5908)}


def test_a_display_on_a_unix_socket_of_this_machine_opens(tenant_client: Client, tenant: User,
                                                         console_host: Host) -> None:
    Grant.objects.create(host=console_host, domain_uuid=SOCKET_UUID, user=tenant, can_console=True)
    [token] = issue(tenant_client, SOCKET_UUID)
    tickets = ConsoleTokenPlugin()
    auth = ConsoleAuthPlugin(tickets)
    target = tickets.lookup(token)
    auth.authenticate(headers={"Origin": ORIGIN, "Cookie": session_cookie(tenant_client)},
                      target_host=target[0], target_port=target[1])
    assert auth.console is not None and auth.console.endpoint.socket == "/run/vm-socket.vnc"


def test_the_auth_plugin_refuses_a_target_other_than_the_tickets(tenant_client: Client) -> None:
    [token] = issue(tenant_client)
    tickets = ConsoleTokenPlugin()
    tickets.lookup(token)
    assert "no checked ticket" in refused(lambda: ConsoleAuthPlugin(tickets).authenticate(
        headers={"Origin": ORIGIN, "Cookie": session_cookie(tenant_client)},
        target_host="127.0.0.1", target_port=22))


@pytest.mark.parametrize("forged", [
    "",
    "A" * 43,  # the right shape, never issued
    "A" * 42 + "=",
    "../../etc/passwd",
    "x" * 43 + ":127.0.0.1:22",  # websockify's token-file syntax: token: host:port
    "127.0.0.1:22",
    "unix_socket:/run/libvirt/libvirt-sock",
])
def test_forged_or_injected_tokens_are_refused(tenant_client: Client, forged: str) -> None:
    issue(tenant_client)
    message = refused(lambda: ConsoleTokenPlugin().lookup(forged))
    assert "malformed" in message or "unknown" in message
    assert forged not in message or not forged


def test_a_real_ticket_with_a_target_appended_is_refused(tenant_client: Client) -> None:
    [token] = issue(tenant_client)
    for injected in (f"{token}:127.0.0.1:22", f"{token}\n127.0.0.1:22", f"{token}&host=127.0.0.1&port=22"):
        assert "malformed" in refused(lambda value=injected: ConsoleTokenPlugin().lookup(value))  # type: ignore[misc]
    assert ConsoleTicket.objects.get().used_at is None


def test_the_stored_hash_is_not_a_ticket(tenant_client: Client) -> None:
    issue(tenant_client)
    assert "malformed" in refused(lambda: ConsoleTokenPlugin().lookup(ConsoleTicket.objects.get().token_hash))


def test_a_vm_restarted_on_another_port_refuses_the_old_ticket(tenant_client: Client, console_host: Host) -> None:
    [token] = issue(tenant_client)
    conn = virt.pool.get(console_host.uri).conn
    dom = conn.lookupByUUIDString(VNC_UUID)
    conn.defineXML(dom.XMLDesc(0).replace("port='5907'", "port='5917'"))
    dom.destroy()
    dom.create()
    assert "display moved" in refused(lambda: open_console(token, cookie=session_cookie(tenant_client)))
    # A new ticket reaches the new port.
    [fresh] = issue(tenant_client)
    assert open_console(fresh, cookie=session_cookie(tenant_client)) == ("127.0.0.1", 5917)


def test_a_stopped_vm_refuses_its_ticket(tenant_client: Client, console_host: Host) -> None:
    [token] = issue(tenant_client)
    virt.pool.get(console_host.uri).conn.lookupByUUIDString(VNC_UUID).destroy()
    assert "not running" in refused(lambda: open_console(token, cookie=session_cookie(tenant_client)))
    response = tenant_client.post(f"/consoles/consoles/{VNC_UUID}/tickets/")
    assert response.status_code == 409 and response.json()["error"] == "The machine is not running."


def test_a_right_revoked_after_issue_refuses_the_ticket(tenant_client: Client, tenant: User) -> None:
    [token] = issue(tenant_client)
    Grant.objects.filter(user=tenant, domain_uuid=VNC_UUID).update(can_console=False)
    assert "console right revoked" in refused(lambda: open_console(token, cookie=session_cookie(tenant_client)))


def test_a_disabled_host_refuses_the_ticket(tenant_client: Client, console_host: Host) -> None:
    [token] = issue(tenant_client)
    Host.objects.filter(pk=console_host.pk).update(enabled=False)
    assert "host disabled" in refused(lambda: open_console(token, cookie=session_cookie(tenant_client)))


@pytest.mark.parametrize("origin", [None, "null", "http://evil.example", "http://127.0.0.1.evil.example:8000",
                                    "https://localhost.evil.example", "file://", "http://user@evil.example",
                                    "http://127.0.0.1:9000",  # another app on another port of the page's host
                                    "http://127.0.0.1:6080",  # the proxy's own port is not the page's either
                                    "https://127.0.0.1:8000",  # another scheme
                                    "http://localhost:8000",  # an allowed host, but not the page's
                                    "http://127.0.0.1:8000/console"])  # not an origin at all
def test_websockets_from_other_origins_are_refused(tenant_client: Client, origin: str | None) -> None:
    [token] = issue(tenant_client)
    assert "origin" in refused(lambda: open_console(token, cookie=session_cookie(tenant_client), origin=origin))
    assert ConsoleTicket.objects.get().used_at is None  # a cross-site attempt burns nothing


@pytest.mark.parametrize("page", ["http://127.0.0.1:8000", "http://localhost", "https://localhost:8443",
                                  "http://[::1]:8000", "https://vmportal.example.org"])
def test_a_ticket_opens_from_the_origin_of_the_page_that_asked_for_it(
        tenant_client: Client, page: str, settings: pytest.FixtureRequest) -> None:
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "vmportal.example.org"]  # type: ignore[attr-defined]
    [token] = issue(tenant_client, page=page)
    open_console(token, cookie=session_cookie(tenant_client), origin=page)
    [token] = issue(tenant_client, page=page)
    assert "origin" in refused(lambda: open_console(token, cookie=session_cookie(tenant_client), origin=ORIGIN
                                                    if page != ORIGIN else "http://localhost"))


def test_a_trusted_origin_opens_any_ticket(tenant_client: Client, settings: pytest.FixtureRequest) -> None:
    settings.CSRF_TRUSTED_ORIGINS = ["https://portal.example.org", "https://*.consoles.example.org"]  # type: ignore[attr-defined]
    for origin in ("https://portal.example.org", "https://eu.consoles.example.org"):
        [token] = issue(tenant_client)
        open_console(token, cookie=session_cookie(tenant_client), origin=origin)
    [token] = issue(tenant_client)
    assert "origin" in refused(lambda: open_console(token, cookie=session_cookie(tenant_client),
                                                    origin="http://portal.example.org"))  # trusted with https only


def test_a_page_on_a_host_not_allowed_gets_no_ticket(tenant_client: Client) -> None:
    response = tenant_client.post(f"/consoles/consoles/{VNC_UUID}/tickets/", HTTP_HOST="evil.example")
    assert response.status_code == 400
    assert not ConsoleTicket.objects.exists()


def test_open_and_close_are_audited_with_the_ticket_hash(tenant_client: Client, tenant: User) -> None:
    [token] = issue(tenant_client)
    tickets = ConsoleTokenPlugin()
    tickets.client_addr = "192.0.2.7"
    auth = ConsoleAuthPlugin(tickets)
    target = tickets.lookup(token)
    auth.authenticate(headers={"Origin": ORIGIN, "Cookie": session_cookie(tenant_client)},
                      target_host=target[0], target_port=target[1])
    assert auth.console is not None
    services.console_close(auth.console, reason="closed by the browser")
    digest = services.hash_token(token)
    rows = {row.action: row for row in AuditEntry.objects.filter(action__startswith="console.")}
    assert set(rows) == {"console.ticket", "console.open", "console.close"}
    for row in rows.values():
        assert (row.actor, row.host_name, str(row.domain_uuid), row.domain_name) == (
            tenant, "consoles", VNC_UUID, "vm-vnc")
        assert digest in row.message and row.result == AuditEntry.Result.SUCCEEDED
    assert rows["console.open"].client_addr == rows["console.close"].client_addr == "192.0.2.7"
    assert "closed by the browser" in rows["console.close"].message


def test_refused_opens_are_audited_with_the_reason(tenant_client: Client) -> None:
    [token] = issue(tenant_client)
    refused(lambda: open_console(token, cookie=session_cookie(tenant_client), origin="http://evil.example"))
    row = AuditEntry.objects.get(action="console.open")
    assert row.result == AuditEntry.Result.DENIED
    assert "evil.example" in row.message and services.hash_token(token) in row.message


def test_logout_and_revocation_end_an_open_console(tenant_client: Client, tenant: User) -> None:
    [token] = issue(tenant_client)
    tickets = ConsoleTokenPlugin()
    auth = ConsoleAuthPlugin(tickets)
    target = tickets.lookup(token)
    auth.authenticate(headers={"Origin": ORIGIN, "Cookie": session_cookie(tenant_client)},
                      target_host=target[0], target_port=target[1])
    console = auth.console
    assert console is not None
    assert services.console_recheck(console) is None
    Grant.objects.filter(user=tenant, domain_uuid=VNC_UUID).update(can_console=False)
    assert services.console_recheck(console) == "console right revoked"
    Grant.objects.filter(user=tenant, domain_uuid=VNC_UUID).update(can_console=True)
    tenant_client.post("/accounts/logout/")
    assert not Session.objects.exists()
    assert services.console_recheck(console) == "session ended"


def test_a_password_change_ends_the_session_for_consoles(tenant_client: Client, tenant: User) -> None:
    key = tenant_client.cookies["sessionid"].value
    assert session_user(key) == tenant
    tenant.set_password("another correct horse battery")
    tenant.save()
    assert session_user(key) is None


def test_logs_show_tickets_masked(caplog: pytest.LogCaptureFixture) -> None:
    token = "Abcd" + "x" * 39
    record = logging.LogRecord("websocket", logging.INFO, __file__, 1, "127.0.0.1: Path: '%s'",
                               (f"/websockify?token={token}",), None)
    MaskTickets().filter(record)
    assert token not in record.getMessage()
    assert "token=Abcd…" in record.getMessage()


def test_the_console_page_escapes_the_name_and_sends_no_referrer(tenant_client: Client, tenant: User,
                                                                 console_host: Host) -> None:
    Grant.objects.filter(user=tenant, domain_uuid=OTHER_UUID).update(can_console=True)
    response = tenant_client.get(f"/consoles/consoles/{OTHER_UUID}/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "<b>vm-other<b>" not in html and "&lt;b&gt;vm-other&lt;b&gt;" in html
    assert response["Referrer-Policy"] == "no-referrer"
    assert "no-store" in response["Cache-Control"]
    assert 'data-kind="vnc"' in html
    assert tenant_client.get(f"/consoles/consoles/{BARE_UUID}/").status_code == 404


def test_the_console_page_of_a_vm_without_display_says_so(admin_user: User, console_host: Host) -> None:
    response = client_for(admin_user).get(f"/consoles/consoles/{BARE_UUID}/")
    assert response.status_code == 409
    assert "no display" in response.content.decode()


def test_tickets_need_the_csrf_token(tenant: User) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(tenant)
    assert client.post(f"/consoles/consoles/{VNC_UUID}/tickets/").status_code == 403


def test_a_vm_restarted_on_the_same_port_refuses_the_old_ticket(tenant_client: Client, console_host: Host) -> None:
    [token] = issue(tenant_client)
    dom = virt.pool.get(console_host.uri).conn.lookupByUUIDString(VNC_UUID)
    dom.destroy()
    dom.create()
    assert "display moved" in refused(lambda: open_console(token, cookie=session_cookie(tenant_client)))


def test_the_vm_page_links_the_console_only_with_the_right_and_a_running_display(
        tenant_client: Client, console_host: Host) -> None:
    def link(uuid: str) -> bool:
        response = tenant_client.get(f"/domains/consoles/{uuid}/")
        assert response.status_code == 200
        return f'href="/consoles/consoles/{uuid}/" target="_blank"' in response.content.decode()

    assert link(VNC_UUID)
    assert not link(OTHER_UUID)  # view right only
    virt.pool.get(console_host.uri).conn.lookupByUUIDString(VNC_UUID).destroy()
    assert not link(VNC_UUID)  # not running


def test_an_unreachable_host_is_said_so_without_its_uri(admin_user: User, closed_loopback_uri: str) -> None:
    Host.objects.create(name="gone", uri=closed_loopback_uri)
    client = client_for(admin_user)
    response = client.get(f"/consoles/gone/{VNC_UUID}/")
    assert response.status_code == 503
    assert "cannot be reached" in response.content.decode() and closed_loopback_uri not in response.content.decode()
    response = client.post(f"/consoles/gone/{VNC_UUID}/tickets/")
    assert response.status_code == 409 and closed_loopback_uri not in response.content.decode()


# --- Per-user limits: tickets per minute, consoles open at once (SECURITY.md rule 11). ---


def limit_refusals(user: User) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(actor=user, action="console.ticket", result=AuditEntry.Result.DENIED))


def test_tickets_per_minute_are_capped_with_a_429_and_one_audit_row_per_burst(
        tenant_client: Client, tenant: User, other_tenant_user: User, console_host: Host,
        settings: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    settings.CONSOLE_TICKETS_PER_MINUTE = 3  # type: ignore[attr-defined]
    issue(tenant_client, SPICE_UUID)  # eight tickets for one SPICE console: one request
    issue(tenant_client)
    issue(tenant_client)
    for _ in range(4):
        response = tenant_client.post(f"/consoles/consoles/{VNC_UUID}/tickets/")
        assert response.status_code == 429
        assert "3 console connections in the last minute" in response.json()["error"]
        assert 1 <= int(response["Retry-After"]) <= 60
    [row] = limit_refusals(tenant)
    assert "console connections per minute (3)" in row.message and "4 requests refused" in row.message
    assert ConsoleTicket.objects.filter(user=tenant).count() == 8 + 2  # the refusals issued nothing
    # Another user is not held back, and a minute later this one is not either.
    Grant.objects.create(host=console_host, domain_uuid=VNC_UUID, user=other_tenant_user, can_console=True)
    issue(client_for(other_tenant_user))
    later = timezone.now() + timedelta(seconds=61)
    monkeypatch.setattr(services.timezone, "now", lambda: later)
    issue(tenant_client)


def test_a_new_burst_of_refusals_gets_its_own_audit_row(tenant_client: Client, tenant: User,
                                                        settings: pytest.FixtureRequest,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    settings.CONSOLE_TICKETS_PER_MINUTE = 1  # type: ignore[attr-defined]
    start = timezone.now()
    for minutes, status in ((0, 200), (0, 429), (2, 200), (2, 429)):  # two minutes apart: two bursts
        at = start + timedelta(minutes=minutes)
        monkeypatch.setattr(services.timezone, "now", lambda at=at: at)
        assert tenant_client.post(f"/consoles/consoles/{VNC_UUID}/tickets/").status_code == status
    rows = limit_refusals(tenant)
    assert len(rows) == 2 and all("1 request refused" in row.message for row in rows)


def open_ticket(client: Client, uuid: str = VNC_UUID) -> ConsoleAuthPlugin:
    """A console opened through the plugins, as the proxy opens it; its `console` is what the handler relays."""
    [token, *_] = issue(client, uuid)
    tickets = ConsoleTokenPlugin()
    auth = ConsoleAuthPlugin(tickets)
    target = tickets.lookup(token)
    auth.authenticate(headers={"Origin": ORIGIN, "Cookie": session_cookie(client)}, target_host=target[0],
                      target_port=target[1])
    return auth


def test_consoles_open_at_once_are_capped_with_a_429(tenant_client: Client, tenant: User,
                                                     settings: pytest.FixtureRequest) -> None:
    settings.CONSOLE_OPEN_LIMIT = 2  # type: ignore[attr-defined]
    first = open_ticket(tenant_client)
    open_ticket(tenant_client, SPICE_UUID)  # one console, whatever number of channels it opens
    for _ in range(3):
        response = tenant_client.post(f"/consoles/consoles/{VNC_UUID}/tickets/")
        assert response.status_code == 429
        assert "2 consoles open" in response.json()["error"] and "close one" in response.json()["error"]
    [row] = limit_refusals(tenant)
    assert "consoles open at once (2)" in row.message and "3 requests refused" in row.message
    assert first.console is not None
    services.console_close(first.console, reason="closed by the browser")
    issue(tenant_client)


def test_tickets_not_opened_yet_count_until_they_expire(tenant_client: Client, settings: pytest.FixtureRequest,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    settings.CONSOLE_OPEN_LIMIT = 1  # type: ignore[attr-defined]
    issue(tenant_client)
    assert tenant_client.post(f"/consoles/consoles/{VNC_UUID}/tickets/").status_code == 429
    later = timezone.now() + timedelta(seconds=60)  # the ticket expired unopened
    monkeypatch.setattr(services.timezone, "now", lambda: later)
    issue(tenant_client)


def test_a_console_whose_proxy_died_stops_counting(tenant_client: Client, settings: pytest.FixtureRequest,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    settings.CONSOLE_OPEN_LIMIT = 1  # type: ignore[attr-defined]
    auth = open_ticket(tenant_client)
    assert auth.console is not None
    assert tenant_client.post(f"/consoles/consoles/{VNC_UUID}/tickets/").status_code == 429
    # While its proxy process relays it, its re-checks say so ...
    later = timezone.now() + timedelta(minutes=5)
    monkeypatch.setattr(services.timezone, "now", lambda: later)
    assert services.console_recheck(auth.console) is None
    assert tenant_client.post(f"/consoles/consoles/{VNC_UUID}/tickets/").status_code == 429
    # ... and once they stop (the process was killed, nothing closed the console), it is not counted.
    much_later = later + timedelta(minutes=2)
    monkeypatch.setattr(services.timezone, "now", lambda: much_later)
    issue(tenant_client)


def test_the_proxy_refuses_a_console_past_the_limit_whatever_was_issued(
        tenant_client: Client, settings: pytest.FixtureRequest) -> None:
    """Tickets issued before the limit was lowered (or by racing requests) still cannot exceed it."""
    first, second = issue(tenant_client)[0], issue(tenant_client)[0]
    settings.CONSOLE_OPEN_LIMIT = 1  # type: ignore[attr-defined]
    open_console(first, cookie=session_cookie(tenant_client))
    assert "consoles open already" in refused(lambda: open_console(second, cookie=session_cookie(tenant_client)))
    assert ConsoleTicket.objects.get(token_hash=services.hash_token(second)).closed_at is not None


def test_a_console_whose_proxy_died_is_purged_after_a_day_and_an_open_one_is_kept(tenant_client: Client) -> None:
    dead, alive = open_ticket(tenant_client).console, open_ticket(tenant_client).console
    assert dead is not None and alive is not None
    two_days_ago = timezone.now() - timedelta(days=2)
    ConsoleTicket.objects.update(issued_at=two_days_ago, expires_at=two_days_ago)  # both opened long ago
    ConsoleTicket.objects.filter(pk=dead.ticket.pk).update(seen_at=two_days_ago)  # its process stopped reporting
    issue(tenant_client)
    assert not ConsoleTicket.objects.filter(pk=dead.ticket.pk).exists()
    assert ConsoleTicket.objects.filter(pk=alive.ticket.pk, closed_at__isnull=True).exists()
