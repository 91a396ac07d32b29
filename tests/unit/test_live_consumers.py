"""The live websockets through the real ASGI stack (origin check, session auth, routing) on the in-memory layer.

Sockets open through `vmportal.asgi.router`, the application without its background work: watcher
events are published the way the supervisor publishes them (live.messages_for), so each test says
exactly what libvirt reported; the last tests run the process's supervisor on test:///default, and
test_live_supervisor.py the application that owns it. What a socket sends (htmx out-of-band swaps of
the pages' partials) is read back by tests.live_messages.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.contrib.sessions.models import Session
from django.test import Client
from django.utils import timezone

from accounts.models import User
from domains import guest_addresses, live, rechecks, services, virt
from domains.models import Grant, Host
from domains.supervisor import HOST_REFRESH_SECONDS, start_supervisor, stop_supervisor
from tests.conftest import TEST_DOMAIN_UUID, client_for
from tests.live_messages import read
from vmportal.asgi import router

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://localhost")
HOST = (b"host", b"localhost")  # the page's own: http://localhost
OTHER_UUID = "11111111-2222-4333-8444-555555555555"
SEQ = 1_000


def record(uuid: str = TEST_DOMAIN_UUID, name: str = "test", **changes: Any) -> virt.DomainRecord:
    base = virt.DomainRecord(
        uuid=uuid, name=name, title="", state=virt.DomainState.RUNNING, reason="booted", persistent=True,
        autostart=False, managed_save=False, snapshots=0, vcpus=1, memory_kib=65536, id=1,
    )
    return replace(base, **changes)


@pytest.fixture(autouse=True)
def fast_passwords(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def session_cookie(user: User) -> bytes:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


class Socket:
    def __init__(self, communicator: WebsocketCommunicator) -> None:
        self.communicator = communicator

    async def receive(self, timeout: float = 2) -> dict[str, Any]:
        return read(await self.communicator.receive_from(timeout))

    async def silent(self, timeout: float = 0.2) -> bool:
        return await self.communicator.receive_nothing(timeout)

    async def receive_type(self, kind: str, timeout: float = 2) -> dict[str, Any]:
        while True:
            message = await self.receive(timeout)
            if message["type"] == kind:
                return message


async def open_socket(path: str, user: User | None, origin: tuple[bytes, bytes] = ORIGIN, *,
                      host: bytes = b"localhost", scheme: str = "ws"):
    """A browser's handshake: the page at `origin` opens `scheme`://`host``path` (Host as browsers send it)."""
    headers = [origin, (b"host", host)]
    if user is not None:
        headers.append((b"cookie", await database_sync_to_async(session_cookie)(user)))
    communicator = WebsocketCommunicator(router, path, headers=headers)
    communicator.scope["scheme"] = scheme
    connected, code = await communicator.connect(timeout=5)
    return communicator, connected, code


@pytest.fixture
async def embedded_watchers(embedded_host: Host) -> AsyncIterator[None]:
    """This process runs the watchers, as the default deployment's web process does; they have listed the
    host when the test begins, and stop after it."""
    supervisor = await start_supervisor()
    watcher = supervisor.watcher(embedded_host.pk)
    deadline = time.monotonic() + 5
    while watcher is None or watcher.reachable is not True:
        assert time.monotonic() < deadline, "the watcher did not list its host"
        await asyncio.sleep(0.05)
    yield
    await stop_supervisor()


async def connect(sockets: list[WebsocketCommunicator], path: str, user: User) -> Socket:
    communicator, connected, code = await open_socket(path, user)
    assert connected, f"refused with {code}"
    sockets.append(communicator)
    return Socket(communicator)


async def publish(host: Host, event: virt.HostEvent) -> None:
    layer = get_channel_layer()
    for group, message in live.messages_for(host, event):
        await layer.group_send(group, message)


def changed(seq: int, rec: virt.DomainRecord) -> virt.DomainChanged:
    return virt.DomainChanged(seq, rec)


# --- Who may connect. ---


async def test_a_page_of_an_allowed_origin_connects(admin_user: User, embedded_host: Host) -> None:
    communicator, connected, _code = await open_socket("/ws/domains/?all", admin_user)
    assert connected
    await communicator.disconnect()


@pytest.mark.parametrize("origin", [b"http://evil.example", b"http://localhost.evil.example", b"null"])
async def test_a_foreign_origin_is_refused(admin_user: User, embedded_host: Host, origin: bytes) -> None:
    _communicator, connected, _code = await open_socket("/ws/domains/?all", admin_user, (b"origin", origin))
    assert not connected


@pytest.mark.parametrize(("origin", "host", "scheme"), [
    (b"http://localhost:9000", b"localhost", "ws"),  # another app on another port of the same host
    (b"http://localhost", b"localhost:8000", "ws"),  # the page's host, but its default port
    (b"https://localhost", b"localhost", "ws"),  # another scheme: a TLS page, a plain-text socket
    (b"http://localhost", b"localhost", "wss"),  # a plain-text page, a TLS socket
    (b"http://evil.example", b"evil.example", "ws"),  # same origin, but a host not in ALLOWED_HOSTS
])
async def test_only_the_pages_own_origin_connects(
    admin_user: User, embedded_host: Host, origin: bytes, host: bytes, scheme: str
) -> None:
    _communicator, connected, _code = await open_socket("/ws/domains/?all", admin_user, (b"origin", origin),
                                                        host=host, scheme=scheme)
    assert not connected


@pytest.mark.parametrize(("origin", "host", "scheme"), [
    (b"http://localhost:8000", b"localhost:8000", "ws"),
    (b"https://127.0.0.1:8443", b"127.0.0.1:8443", "wss"),
    (b"http://[::1]", b"[::1]:80", "ws"),  # the same origin, port spelt out or not
])
async def test_the_pages_own_origin_connects(
    admin_user: User, embedded_host: Host, origin: bytes, host: bytes, scheme: str
) -> None:
    communicator, connected, code = await open_socket("/ws/domains/?all", admin_user, (b"origin", origin),
                                                      host=host, scheme=scheme)
    assert connected, code
    await communicator.disconnect()


async def test_a_trusted_origin_connects(admin_user: User, embedded_host: Host, settings) -> None:
    settings.CSRF_TRUSTED_ORIGINS = ["https://portal.example.org"]
    communicator, connected, _code = await open_socket(
        "/ws/domains/?all", admin_user, (b"origin", b"https://portal.example.org"), host=b"localhost:8000")
    assert connected
    await communicator.disconnect()
    _communicator, connected, _code = await open_socket(
        "/ws/domains/?all", admin_user, (b"origin", b"http://portal.example.org"), host=b"localhost:8000")
    assert not connected  # trusted with https only


async def test_tls_ended_by_the_reverse_proxy_is_the_pages_scheme(admin_user: User, embedded_host: Host,
                                                                   settings) -> None:
    """Behind the nginx recipe the socket arrives as ws with X-Forwarded-Proto: https, as Django reads it."""
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    headers = [(b"origin", b"https://localhost"), (b"host", b"localhost"), (b"x-forwarded-proto", b"https"),
               (b"cookie", await database_sync_to_async(session_cookie)(admin_user))]
    communicator = WebsocketCommunicator(router, "/ws/domains/?all", headers=headers)
    assert (await communicator.connect())[0]
    await communicator.disconnect()
    plain = WebsocketCommunicator(router, "/ws/domains/?all", headers=[(b"origin", b"http://localhost"),
                                                                           *headers[1:]])
    assert not (await plain.connect())[0]  # the page was https: an http page is another origin


@pytest.mark.parametrize("path", ["/ws/nope/", "/ws/domains/embedded/not-a-uuid/", "/"])
async def test_an_unknown_path_is_refused_with_a_close_code(admin_user: User, embedded_host: Host, path: str,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    _communicator, connected, code = await open_socket(path, admin_user)
    assert (connected, code) == (False, 4404)
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


async def test_anonymous_is_refused(embedded_host: Host) -> None:
    _communicator, connected, _code = await open_socket("/ws/domains/?all", None)
    assert not connected


async def test_a_vm_page_socket_is_refused_exactly_where_the_page_is_a_404(
    tenant_user: User, other_tenant_user: User, tenant_grant: Grant, embedded_host: Host
) -> None:
    path = f"/ws/domains/embedded/{TEST_DOMAIN_UUID}/"
    communicator, connected, _code = await open_socket(path, tenant_user)
    assert connected
    await communicator.disconnect()
    for user, where in ((other_tenant_user, path), (tenant_user, f"/ws/domains/embedded/{OTHER_UUID}/"),
                        (tenant_user, f"/ws/domains/nowhere/{TEST_DOMAIN_UUID}/")):
        _communicator, connected, _code = await open_socket(where, user)
        assert not connected, where


# --- What each recipient receives. ---


async def test_each_recipient_receives_only_the_vms_it_may_see(
    sockets, admin_user: User, tenant_user: User, other_tenant_user: User, tenant_grant: Grant, embedded_host: Host
) -> None:
    admin = await connect(sockets, "/ws/domains/?all", admin_user)
    tenant = await connect(sockets, "/ws/domains/?all", tenant_user)
    other = await connect(sockets, "/ws/domains/?all", other_tenant_user)

    await publish(embedded_host, changed(SEQ, record(OTHER_UUID, "secret", title="not yours")))
    await publish(embedded_host, changed(SEQ + 1, record(state=virt.DomainState.PAUSED, reason="user")))

    first, second = await admin.receive(), await admin.receive()
    assert (first["id"], second["id"]) == (f"domain-embedded-{OTHER_UUID}", f"domain-embedded-{TEST_DOMAIN_UUID}")
    row = await tenant.receive()
    assert row["type"] == "row" and row["id"] == f"domain-embedded-{TEST_DOMAIN_UUID}"
    assert 'data-state="paused"' in row["html"] and ">paused</span>" in row["html"]
    assert 'data-action="resume"' in row["html"]  # the tenant may operate it: the same actions as the page
    assert await tenant.silent()
    assert await other.silent()


async def test_each_socket_gets_the_row_in_its_pages_language(admin_user: User, tenant_user: User,
                                                              tenant_grant: Grant, embedded_host: Host,
                                                              sockets) -> None:
    tenant_user.language = "vi"
    await database_sync_to_async(tenant_user.save)()
    admin = await connect(sockets, "/ws/domains/?all", admin_user)
    tenant = await connect(sockets, "/ws/domains/?all", tenant_user)
    await publish(embedded_host, changed(SEQ, record(state=virt.DomainState.PAUSED, reason="user")))
    assert 'aria-label="Tick test"' in (await admin.receive())["html"]
    assert 'aria-label="Đánh dấu test"' in (await tenant.receive())["html"]


async def test_a_pushed_row_is_the_row_the_page_renders(admin_user: User, embedded_host: Host, sockets) -> None:
    admin = await connect(sockets, "/ws/domains/?all", admin_user)
    current = await database_sync_to_async(virt.get_domain)("test:///default", TEST_DOMAIN_UUID)
    await publish(embedded_host, changed(SEQ, current))
    pushed = (await admin.receive())["html"]

    client = await database_sync_to_async(_logged_in)(admin_user)
    page = (await database_sync_to_async(client.get)("/domains/", {"all": ""})).content.decode()
    start = page.index(f'<tr id="domain-embedded-{TEST_DOMAIN_UUID}"')
    rendered = page[start:page.index("</tr>", start) + 5]
    # The same partial, byte for byte, but for the page's per-request CSRF input (htmx sends the header).
    assert re.sub(r'<input type="hidden" name="csrfmiddlewaretoken"[^>]*>', "", rendered) == pushed.strip()


def _logged_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


async def test_guest_controlled_text_is_escaped(admin_user: User, embedded_host: Host, sockets) -> None:
    admin = await connect(sockets, "/ws/domains/?all", admin_user)
    await publish(embedded_host, changed(SEQ, record(title="<img src=x onerror=alert(1)>")))
    html = (await admin.receive())["html"]
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


async def test_a_filtered_list_stays_true_to_its_filter(admin_user: User, embedded_host: Host, sockets) -> None:
    running = await connect(sockets, "/ws/domains/?state-running", admin_user)

    await publish(embedded_host, changed(SEQ, record()))
    assert (await running.receive())["type"] == "row"
    await publish(embedded_host, changed(SEQ + 1, record(state=virt.DomainState.PAUSED, reason="user")))
    assert await running.receive() == {"type": "remove", "id": f"domain-embedded-{TEST_DOMAIN_UUID}"}
    await publish(embedded_host, changed(SEQ + 2, record(state=virt.DomainState.PAUSED, reason="user", vcpus=2)))
    assert await running.silent()  # still not in the view: nothing more to say
    await publish(embedded_host, changed(SEQ + 3, record()))
    assert (await running.receive())["type"] == "row"


async def test_the_text_and_host_filters_apply_too(admin_user: User, embedded_host: Host, xml_host, sockets) -> None:
    other_host = await database_sync_to_async(xml_host)("other", [])
    only_web = await connect(sockets, "/ws/domains/?all&q=WEB", admin_user)
    only_other = await connect(sockets, "/ws/domains/?all&host=other", admin_user)

    await publish(embedded_host, changed(SEQ, record(name="db-1")))
    await publish(embedded_host, changed(SEQ + 1, record(OTHER_UUID, "web-1")))
    await publish(other_host, changed(SEQ + 2, record("33333333-2222-4333-8444-555555555555", "web-2")))

    assert (await only_web.receive())["type"] == "remove"  # db-1 does not match "WEB"
    assert (await only_web.receive())["id"] == f"domain-embedded-{OTHER_UUID}"
    assert (await only_web.receive())["id"] == "domain-other-33333333-2222-4333-8444-555555555555"
    assert (await only_other.receive())["id"] == "domain-other-33333333-2222-4333-8444-555555555555"
    assert await only_other.silent()


async def test_a_vm_on_two_hosts_has_a_row_per_host_and_leaves_one_alone(
    admin_user: User, embedded_host: Host, xml_host, sockets
) -> None:
    """A live migration lists the VM on both hosts for a while; the source's removal spares the other row."""
    destination = await database_sync_to_async(xml_host)("other", [])
    admin = await connect(sockets, "/ws/domains/?all", admin_user)

    await publish(embedded_host, changed(SEQ, record()))
    await publish(destination, changed(SEQ + 1, record(state=virt.DomainState.PAUSED, reason="migration")))
    await publish(embedded_host, virt.DomainRemoved(SEQ + 2, TEST_DOMAIN_UUID, record()))

    rows = [await admin.receive(), await admin.receive()]
    assert [row["id"] for row in rows] == [f"domain-embedded-{TEST_DOMAIN_UUID}", f"domain-other-{TEST_DOMAIN_UUID}"]
    assert await admin.receive() == {"type": "remove", "id": f"domain-embedded-{TEST_DOMAIN_UUID}"}
    assert await admin.silent()


async def test_an_older_listing_never_overwrites_a_newer_event(admin_user: User, embedded_host: Host, sockets) -> None:
    admin = await connect(sockets, "/ws/domains/?all", admin_user)
    await publish(embedded_host, changed(SEQ + 5, record(state=virt.DomainState.PAUSED, reason="user")))
    assert 'data-state="paused"' in (await admin.receive())["html"]
    # A resync listing that began before that event arrives after it: its copy of the VM is stale.
    await publish(embedded_host, virt.HostSynced(SEQ + 4, (record(),), ()))
    assert (await admin.receive())["type"] == "host"
    assert await admin.silent()
    await publish(embedded_host, changed(SEQ + 6, record()))
    assert 'data-state="running"' in (await admin.receive())["html"]


async def test_an_unreachable_host_shows_its_vms_as_unknown_then_resyncs(
    admin_user: User, embedded_host: Host, sockets
) -> None:
    admin = await connect(sockets, "/ws/domains/?all", admin_user)
    page = await connect(sockets, f"/ws/domains/embedded/{TEST_DOMAIN_UUID}/", admin_user)
    await publish(embedded_host, virt.HostLost(SEQ, "The host cannot be reached right now.", (record(),)))

    assert await admin.receive() == {"type": "host", "host": "embedded", "reachable": False,
                                     "message": "The host cannot be reached right now."}
    row = await admin.receive()
    assert 'data-state="unknown"' in row["html"] and "last seen running" in row["html"]
    assert "shut off" not in row["html"] and "data-action" not in row["html"]
    summary = await page.receive()
    assert summary["type"] == "summary" and "last seen running" in summary["html"]

    await publish(embedded_host, virt.HostSynced(SEQ + 1, (record(state=virt.DomainState.PAUSED),), (OTHER_UUID,)))
    assert (await admin.receive())["reachable"] is True
    assert 'data-state="paused"' in (await admin.receive())["html"]
    assert 'data-state="paused"' in (await page.receive())["html"]


async def test_a_removed_vm_leaves_the_list_and_its_page(admin_user: User, embedded_host: Host, sockets) -> None:
    admin = await connect(sockets, "/ws/domains/?all", admin_user)
    page = await connect(sockets, f"/ws/domains/embedded/{TEST_DOMAIN_UUID}/", admin_user)
    await publish(embedded_host, virt.DomainRemoved(SEQ, TEST_DOMAIN_UUID, record()))
    assert await admin.receive() == {"type": "remove", "id": f"domain-embedded-{TEST_DOMAIN_UUID}"}
    assert await page.receive() == {"type": "gone"}


async def test_a_vm_page_whose_details_changed_asks_the_guest_agent_again(
    admin_user: User, embedded_host: Host, sockets
) -> None:
    page = await connect(sockets, f"/ws/domains/embedded/{TEST_DOMAIN_UUID}/", admin_user)
    await publish(embedded_host, changed(SEQ, record()))
    assert 'hx-target="#agent-panel"' not in (await page.receive())["html"]
    await publish(embedded_host, virt.DomainChanged(SEQ + 1, record(), details=True))  # the agent connected
    summary = (await page.receive())["html"]
    assert f'hx-get="/domains/embedded/{TEST_DOMAIN_UUID}/agent/" hx-trigger="load" hx-target="#agent-panel"' in summary


async def test_a_migration_jobs_page_receives_that_jobs_progress_alone(
    admin_user: User, embedded_host: Host, sockets
) -> None:
    job_page = await connect(sockets, f"/ws/domains/embedded/{TEST_DOMAIN_UUID}/?job=7", admin_user)
    vm_page = await connect(sockets, f"/ws/domains/embedded/{TEST_DOMAIN_UUID}/", admin_user)
    await publish(embedded_host, changed(SEQ, record(state=virt.DomainState.PAUSED, reason="migration")))
    for job_id in (8, 7):
        group = live.domain_group(TEST_DOMAIN_UUID)
        await get_channel_layer().group_send(group, live.addressed(group, {
            "type": "live.migration", "job_id": job_id, "uuid": TEST_DOMAIN_UUID, "state": "running",
            "html": f'<section id="migration-{job_id}"></section>', "reported_at": None}))
    await publish(embedded_host, virt.DomainRemoved(SEQ + 1, TEST_DOMAIN_UUID, record()))

    assert await job_page.receive() == {"type": "migration", "id": "migration-7",
                                        "html": '<section id="migration-7"></section>'}
    assert await job_page.silent()  # neither the VM's summary, nor another job, nor "gone"
    assert [(await vm_page.receive())["type"] for _ in range(4)] == ["summary", "migration", "migration", "gone"]


# --- Grants and sessions. ---


async def test_a_revoked_grant_removes_the_vm_from_the_open_list(
    admin_user: User, tenant_user: User, tenant_grant: Grant, embedded_host: Host, sockets
) -> None:
    tenant = await connect(sockets, "/ws/domains/?all", tenant_user)
    page_communicator, connected, _code = await open_socket(f"/ws/domains/embedded/{TEST_DOMAIN_UUID}/", tenant_user)
    assert connected
    page = Socket(page_communicator)

    await database_sync_to_async(services.grant_revoke)(actor=admin_user, grant=tenant_grant)

    assert await tenant.receive() == {"type": "remove", "id": f"domain-embedded-{TEST_DOMAIN_UUID}"}
    revoked = await page.receive()
    assert revoked["type"] == "revoked" and "Your access to this machine was revoked" in revoked["html"]
    assert (await page_communicator.receive_output(2))["type"] == "websocket.close"
    await publish(embedded_host, changed(SEQ, record(state=virt.DomainState.PAUSED)))
    assert await tenant.silent()  # and nothing about it any more


async def test_a_new_grant_makes_the_list_fetch_itself_again(
    admin_user: User, tenant_user: User, embedded_host: Host, sockets
) -> None:
    tenant = await connect(sockets, "/ws/domains/?all", tenant_user)
    grant = Grant(host=embedded_host, domain_uuid=TEST_DOMAIN_UUID, user=tenant_user)
    await database_sync_to_async(services.grant_save)(actor=admin_user, grant=grant)
    assert await tenant.receive() == {"type": "refresh"}
    await publish(embedded_host, changed(SEQ, record()))
    assert (await tenant.receive())["id"] == f"domain-embedded-{TEST_DOMAIN_UUID}"  # it follows the new host


async def test_logging_out_closes_that_sessions_sockets(admin_user: User, embedded_host: Host) -> None:
    client = await database_sync_to_async(_logged_in)(admin_user)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    communicator = WebsocketCommunicator(router, "/ws/domains/?all", headers=[ORIGIN, HOST, (b"cookie", cookie)])
    assert (await communicator.connect())[0]
    other_session, connected, _code = await open_socket("/ws/domains/?all", admin_user)
    assert connected

    await database_sync_to_async(client.post)("/accounts/logout/")

    assert (await communicator.receive_output(2)) == {"type": "websocket.close", "code": SESSION_ENDED}
    assert await other_session.receive_nothing(0.2)  # the user's other login stays live
    await other_session.disconnect()


class FakeFrames:
    """vmportal.frames.FrameWriter as a page behind a stalled link looks to its consumer."""

    def __init__(self) -> None:
        self.behind = False
        self.written: list[dict[str, Any]] = []
        self.caught_up: Any = None

    def write(self, text: str) -> bool:
        if not self.behind:  # behind, it drops what it is handed (and says it took care of it)
            self.written.append(read(text))
        return True

    def watch_backlog(self, caught_up: Any) -> None:
        self.caught_up = caught_up


async def test_a_page_behind_on_its_socket_is_sent_nothing_then_resynced_once_it_took_everything(
    operator_user: User, embedded_host: Host
) -> None:
    frames = FakeFrames()
    cookie = (b"cookie", await database_sync_to_async(session_cookie)(operator_user))
    communicator = WebsocketCommunicator(router, "/ws/domains/?all", headers=[ORIGIN, HOST, cookie])
    communicator.scope["frames"] = frames
    assert (await communicator.connect())[0]
    try:
        await publish(embedded_host, changed(SEQ, record()))
        await until_true(lambda: len(frames.written) == 1)
        assert frames.written[0]["type"] == "row"

        frames.behind = True  # Twisted paused it: more than BACKLOG_BYTES wait to be sent
        await publish(embedded_host, changed(SEQ + 1, record(state=virt.DomainState.PAUSED)))
        await asyncio.sleep(0.2)
        assert len(frames.written) == 1  # dropped, not buffered without end

        frames.behind = False
        frames.caught_up()  # all that waited was sent: the page resyncs
        on = {"type": "indicator", "state": "on"}
        await until_true(lambda: on in frames.written)
        assert frames.written.index({"type": "refresh"}) < frames.written.index(on)
    finally:
        await communicator.disconnect()


async def until_true(check: Any, timeout: float = 2) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not within the time"
        await asyncio.sleep(0.01)


# --- Sessions that end, users that change, with no broadcast to say so: the re-check finds them. ---

RECHECK = 0.2  # VMPORTAL_LIVE_RECHECK_SECONDS in these tests; each waits a few intervals, far below the default
SESSION_ENDED = 4401  # the close code after which live.js stops reconnecting


@pytest.fixture
def quick_recheck(settings) -> None:
    settings.LIVE_RECHECK_SECONDS = RECHECK


async def closed_with(communicator: WebsocketCommunicator) -> int:
    """The close code the server sends within a few re-check intervals (messages before it are skipped)."""
    deadline = time.monotonic() + 10 * RECHECK
    while (output := await communicator.receive_output(max(0.01, deadline - time.monotonic())))["type"] != \
            "websocket.close":
        pass
    return int(output["code"])


def _end_session(how: str, user: User) -> None:
    if how == "deleted":
        Session.objects.all().delete()
    elif how == "expired":
        Session.objects.update(expire_date=timezone.now() - timedelta(seconds=1))
    elif how == "password changed":
        user.set_password("a new correct horse battery staple")
        user.save()
    elif how == "deactivated":
        user.is_active = False
        user.save()


@pytest.mark.parametrize("how", ["deleted", "expired", "password changed", "deactivated"])
async def test_a_session_that_ends_closes_its_sockets_within_the_interval(
    quick_recheck, tenant_user: User, tenant_grant: Grant, embedded_host: Host, how: str
) -> None:
    cookie = (b"cookie", await database_sync_to_async(session_cookie)(tenant_user))
    opened = []
    for path in ("/ws/domains/?all", f"/ws/domains/embedded/{TEST_DOMAIN_UUID}/"):
        communicator = WebsocketCommunicator(router, path, headers=[ORIGIN, HOST, cookie])
        assert (await communicator.connect())[0]
        opened.append(communicator)
    await database_sync_to_async(_end_session)(how, tenant_user)
    for communicator in opened:
        assert await closed_with(communicator) == SESSION_ENDED
    again = WebsocketCommunicator(router, "/ws/domains/?all", headers=[ORIGIN, HOST, cookie])
    assert not (await again.connect())[0]  # and the page cannot reconnect with it


async def test_a_live_session_stays_open_across_rechecks(quick_recheck, tenant_user: User, tenant_grant: Grant,
                                                        embedded_host: Host, sockets) -> None:
    tenant = await connect(sockets, "/ws/domains/?all", tenant_user)
    assert await tenant.silent(5 * RECHECK)
    await publish(embedded_host, changed(SEQ, record()))
    assert (await tenant.receive())["id"] == f"domain-embedded-{TEST_DOMAIN_UUID}"


async def test_the_sockets_of_a_process_are_rechecked_together(
    quick_recheck, tenant_user: User, tenant_grant: Grant, operator_user: User, embedded_host: Host, sockets,
    monkeypatch
) -> None:
    reads: list[list[str]] = []
    read_standings = rechecks._read

    def read_counted(session_keys: list[str]) -> dict[str, rechecks.Standing]:
        reads.append(session_keys)
        return read_standings(session_keys)

    monkeypatch.setattr(rechecks, "_read", read_counted)
    opened = [await connect(sockets, "/ws/domains/?all", user) for user in (tenant_user, tenant_user, operator_user)]
    opened.append(await connect(sockets, f"/ws/domains/embedded/{TEST_DOMAIN_UUID}/", operator_user))
    reads.clear()
    deadline = time.monotonic() + 20 * RECHECK
    while len(reads) < 4:
        assert time.monotonic() < deadline, "not re-checked within the time"
        await asyncio.sleep(RECHECK / 4)
    # Four sessions (each connect logs in anew), every turn read together: one thread hop, not four. (The
    # first read may be of a turn that came while the last socket opened.)
    assert all(len(session_keys) == 4 for session_keys in reads[1:])
    for socket in opened:
        assert await socket.silent(0.01)  # all still open, told nothing


async def test_sockets_whose_re_checks_keep_failing_close_and_the_failure_is_told_once_a_turn(
    quick_recheck, tenant_user: User, tenant_grant: Grant, embedded_host: Host, monkeypatch, caplog
) -> None:
    def database_away(session_keys: list[str]) -> dict[str, rechecks.Standing]:
        raise ConnectionError("the database is away")

    opened = []
    for _page in range(3):
        communicator, connected, _code = await open_socket("/ws/domains/?all", tenant_user)
        assert connected
        opened.append(communicator)
    monkeypatch.setattr(rechecks, "_read", database_away)
    with caplog.at_level(logging.WARNING, logger="domains.rechecks"):
        for communicator in opened:  # fail closed: the page reconnects, and is checked anew
            assert await closed_with(communicator) == 1011
    told = [record for record in caplog.records if record.name == "domains.rechecks"]
    assert 3 <= len(told) <= 4  # one a turn for the three sockets, not one per socket


async def test_a_demoted_admin_no_longer_receives_what_it_may_not_see(
    quick_recheck, admin_user: User, embedded_host: Host, sockets
) -> None:
    admin = await connect(sockets, "/ws/domains/?all", admin_user)
    await publish(embedded_host, changed(SEQ, record(OTHER_UUID, "secret")))
    assert (await admin.receive())["id"] == f"domain-embedded-{OTHER_UUID}"

    admin_user.role = User.Role.TENANT  # granted nothing
    await database_sync_to_async(admin_user.save)()

    # Both rows leave: the one pushed and the one the page rendered (the socket follows the page it opened on).
    removed = [await admin.receive(10 * RECHECK), await admin.receive()]
    assert sorted(message["id"] for message in removed if message["type"] == "remove") == [
        f"domain-embedded-{OTHER_UUID}", f"domain-embedded-{TEST_DOMAIN_UUID}"]
    assert await admin.receive() == {"type": "refresh"}  # the list again, in its new scope
    await publish(embedded_host, changed(SEQ + 1, record(OTHER_UUID, "secret", title="still secret")))
    await publish(embedded_host, changed(SEQ + 2, record(state=virt.DomainState.PAUSED)))
    assert await admin.silent(3 * RECHECK)


async def test_a_narrowed_grant_has_the_vm_page_say_so_and_fetch_its_controls_again(
    admin_user: User, tenant_user: User, tenant_grant: Grant, embedded_host: Host, sockets
) -> None:
    communicator, connected, _code = await open_socket(f"/ws/domains/embedded/{TEST_DOMAIN_UUID}/", tenant_user)
    assert connected
    page = Socket(communicator)
    tenant_grant.can_operate = False
    await database_sync_to_async(services.grant_save)(actor=admin_user, grant=tenant_grant)
    assert await page.receive() == {"type": "refresh-summary"}  # its actions: no event came since it was read
    changed = await page.receive()
    assert changed["type"] == "rights-changed" and "Your rights on this machine changed" in changed["html"]
    assert await page.receive() == {"type": "refresh-controls"}
    # What it fetches: the page without the snapshot and hardware controls an operator has.
    controls = await database_sync_to_async(lambda: client_for(tenant_user).get(
        f"/domains/embedded/{TEST_DOMAIN_UUID}/").content.decode())()
    controls = controls[controls.index('id="domain-controls"'):]
    assert "Create snapshot" not in controls and "Change hardware" not in controls and "Guest agent" in controls


async def test_a_demoted_operator_loses_the_vm_page_it_may_no_longer_see(
    quick_recheck, operator_user: User, embedded_host: Host
) -> None:
    communicator, connected, _code = await open_socket(f"/ws/domains/embedded/{TEST_DOMAIN_UUID}/", operator_user)
    assert connected
    operator_user.role = User.Role.TENANT
    await database_sync_to_async(operator_user.save)()
    assert read(await communicator.receive_from(10 * RECHECK))["type"] == "revoked"
    assert (await communicator.receive_output(1))["type"] == "websocket.close"


# --- The embedded watchers: real libvirt events on test:///default, pushed to the page. ---


async def test_embedded_watchers_push_a_real_state_change(
    embedded_watchers, operator_user: User, embedded_host: Host, sockets
) -> None:
    operator = await connect(sockets, "/ws/domains/?all", operator_user)
    await database_sync_to_async(virt.run_action)("test:///default", TEST_DOMAIN_UUID, virt.Action.PAUSE)
    while 'data-state="paused"' not in (row := await operator.receive_type("row"))["html"]:
        pass
    assert ">user</small>" in row["html"]


async def test_an_action_from_the_dashboard_nudges_changes_libvirt_has_no_event_for(
    embedded_watchers, operator_user: User, embedded_host: Host, sockets
) -> None:
    operator = await connect(sockets, "/ws/domains/?all&autostart", operator_user)
    await database_sync_to_async(services.domain_act)(
        actor=operator_user, host_name="embedded", uuid=TEST_DOMAIN_UUID, action=virt.Action.AUTOSTART_ON)
    row = await asyncio.wait_for(operator.receive_type("row"), 3)
    assert row["id"] == f"domain-embedded-{TEST_DOMAIN_UUID}"
    assert "<td class=\"col-xl\">yes</td>" in row["html"]


async def test_a_page_is_told_what_changed_between_its_render_and_its_socket(
    embedded_watchers, operator_user: User, embedded_host: Host, sockets
) -> None:
    watching = await connect(sockets, "/ws/domains/?all", operator_user)
    rendered = time.time_ns() // 1000  # a page renders: the VM runs
    await database_sync_to_async(virt.run_action)("test:///default", TEST_DOMAIN_UUID, virt.Action.PAUSE)
    while 'data-state="paused"' not in (await watching.receive_type("row"))["html"]:
        pass  # the change happened before the page's socket opened

    late = await connect(sockets, f"/ws/domains/?all&since={rendered}", operator_user)
    row = await late.receive_type("row")
    assert row["id"] == f"domain-embedded-{TEST_DOMAIN_UUID}" and 'data-state="paused"' in row["html"]
    page = await connect(sockets, f"/ws/domains/embedded/{TEST_DOMAIN_UUID}/?since={rendered}", operator_user)
    assert 'data-state="paused"' in (await page.receive_type("summary"))["html"]

    current = await connect(sockets, f"/ws/domains/?all&since={time.time_ns() // 1000}", operator_user)
    assert await current.silent(0.5)  # rendered after the change: nothing to replay


async def test_a_page_of_a_host_added_meanwhile_gets_it_watched_at_once(
    embedded_watchers, admin_user: User, embedded_host: Host, xml_host, sockets
) -> None:
    await database_sync_to_async(xml_host)("other", [{"name": "web-2", "uuid": OTHER_UUID}])
    page = await connect(sockets, f"/ws/domains/?all&host=other&since={time.time_ns() // 1000}", admin_user)
    # Well before the supervisor's next look at the hosts table (HOST_REFRESH_SECONDS).
    host = await page.receive_type("host", timeout=HOST_REFRESH_SECONDS / 4)
    assert (host["host"], host["reachable"]) == ("other", True)
    assert (await page.receive_type("row"))["id"] == f"domain-other-{OTHER_UUID}"


async def test_addresses_the_watchers_learn_reach_lists_that_other_processes_render(
    embedded_watchers, admin_user: User, embedded_host: Host, sockets
) -> None:
    page = await connect(sockets, "/ws/domains/?all", admin_user)
    # What the watchers' AddressReader does once the agent answers (test:///default has no agent) ...
    await database_sync_to_async(guest_addresses.store.write)("test:///default", TEST_DOMAIN_UUID, ("192.0.2.10",))
    try:
        await database_sync_to_async(live.nudge)(host_id=embedded_host.pk, uuid=TEST_DOMAIN_UUID)
        while "192.0.2.10" not in (await page.receive_type("row"))["html"]:
            pass
        # ... and the lists read the same store (a second daphne process too: it is the shared cache with Redis).
        client = await database_sync_to_async(_logged_in)(admin_user)
        listing = await database_sync_to_async(client.get)("/domains/", {"format": "json"})
        assert listing.json()["domains"][0]["addresses"] == ["192.0.2.10"]
    finally:
        await database_sync_to_async(guest_addresses.store.write)("test:///default", TEST_DOMAIN_UUID, ())
