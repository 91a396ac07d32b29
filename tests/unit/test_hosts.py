"""Registering, editing, testing and removing hosts, from the Hosts page and from manage.py."""

from __future__ import annotations

import stat
import time
from io import StringIO
from urllib.parse import urlsplit

import libvirt
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.utils.html import escape

from accounts.models import User
from audit.models import AuditEntry
from domains.models import Grant, Host
from tests.conftest import TEST_DOMAIN_UUID, client_for

HTMX = {"HX-Request": "true"}


@pytest.fixture(autouse=True)
def fast_password_hashing(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _hypervisor_facts() -> tuple[str, str]:
    """What test:///default says about itself, asked of libvirt directly."""
    conn = libvirt.open("test:///default")
    try:
        number = conn.getLibVersion()
        return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}", conn.getHostname()
    finally:
        conn.close()


# --- Registering from the page ---


def test_admin_registers_a_host_from_the_page(admin_user: User):
    client = client_for(admin_user)
    response = client.post("/hosts/", {"name": "lab2", "uri": "test:///default", "enabled": "on"})
    assert response.status_code == 302
    assert response["Location"] == "/hosts/"

    host = Host.objects.get(name="lab2")
    assert (host.uri, host.enabled) == ("test:///default", True)
    entry = AuditEntry.objects.get(action="host.register")
    assert (entry.actor, entry.host, entry.host_name, entry.result) == (
        admin_user, host, "lab2", AuditEntry.Result.SUCCEEDED)

    page = client.get("/hosts/").content.decode()
    assert "Host lab2 registered." in page
    assert 'id="host-lab2"' in page


def test_a_registered_host_lists_its_vms(admin_user: User):
    client_for(admin_user).post("/hosts/", {"name": "lab2", "uri": "test:///default", "enabled": "on"})
    listing = client_for(admin_user).get("/domains/", {"format": "json"}).json()
    assert [(row["host"], row["name"]) for row in listing["domains"]] == [("lab2", "test")]


@pytest.mark.parametrize(
    ("uri", "error"),
    [
        ("http://x", "Use a libvirt URI such as qemu:///system"),
        ("qemu+ssh:///system", "A remote URI names its host"),
        ("qemu+ssh://root:hunter2@kvm1.example/system", "Do not put a password in the URI"),
        ("qemu+tcp://kvm1.example/", "A QEMU URI ends in /system or /session."),
        ("test:///inventory.txt", "A test URI is test:///default or test:///absolute/path/to/file.xml."),
    ],
)
def test_an_invalid_uri_is_refused_and_the_form_keeps_what_was_typed(admin_user: User, uri: str, error: str):
    response = client_for(admin_user).post("/hosts/", {"name": "lab2", "uri": uri, "enabled": "on"})
    assert response.status_code == 400
    body = response.content.decode()
    assert escape(error) in body
    assert 'value="lab2"' in body
    assert f'value="{escape(uri)}"' in body
    assert not Host.objects.filter(name="lab2").exists()
    assert not AuditEntry.objects.exists()


def test_a_duplicate_name_is_refused(admin_user: User, embedded_host: Host):
    response = client_for(admin_user).post("/hosts/", {"name": "embedded", "uri": "test:///default"})
    assert response.status_code == 400
    assert "Host with this Name already exists." in response.content.decode()
    assert Host.objects.count() == 1


def test_a_name_that_is_not_a_slug_is_refused(admin_user: User):
    response = client_for(admin_user).post("/hosts/", {"name": "lab 2/x", "uri": "test:///default"})
    assert response.status_code == 400
    assert 'value="lab 2/x"' in response.content.decode()
    assert not Host.objects.exists()


# --- Editing and removing ---


def test_edit_shows_the_current_uri_and_saves_changes(admin_user: User, embedded_host: Host):
    client = client_for(admin_user)
    form = client.get("/hosts/embedded/edit/").content.decode()
    assert 'value="test:///default"' in form

    response = client.post("/hosts/embedded/edit/", {"name": "renamed", "uri": "test:///default"})
    assert response.status_code == 302
    embedded_host.refresh_from_db()
    assert embedded_host.name == "embedded"  # the name is read-only: grants and audit rows refer to it
    assert embedded_host.enabled is False
    assert AuditEntry.objects.get(action="host.update").result == AuditEntry.Result.SUCCEEDED
    assert "Host embedded saved." in client.get("/hosts/").content.decode()


def test_edit_with_an_invalid_uri_changes_nothing(admin_user: User, embedded_host: Host):
    response = client_for(admin_user).post("/hosts/embedded/edit/", {"uri": "qemu+ssh:///system", "enabled": "on"})
    assert response.status_code == 400
    body = response.content.decode()
    assert "A remote URI names its host" in body
    assert 'value="qemu+ssh:///system"' in body
    embedded_host.refresh_from_db()
    assert embedded_host.uri == "test:///default"


@pytest.mark.parametrize("address", ["10.0.0.5", "fd00::5", "host1.example.org"])
def test_the_migration_address_is_registered_shown_and_kept_by_the_command(admin_user: User, embedded_host: Host,
                                                                          address: str):
    client = client_for(admin_user)
    response = client.post("/hosts/embedded/edit/", {"uri": "test:///default", "enabled": "on",
                                                     "migration_address": address})
    assert response.status_code == 302
    embedded_host.refresh_from_db()
    assert embedded_host.migration_address == address
    assert f"<code>{address}</code>" in client.get("/hosts/").content.decode()
    _hosts("add", "embedded", "test:///default")  # the command leaves an address it is not given
    embedded_host.refresh_from_db()
    assert embedded_host.migration_address == address


@pytest.mark.parametrize("address", ["tcp://10.0.0.5", "10.0.0.5:49152", "0.0.0.0", "bad_name", "-x.example"])  # noqa: S104 - refused, not bound
def test_a_migration_address_that_is_not_one_host_is_refused(admin_user: User, embedded_host: Host, address: str):
    response = client_for(admin_user).post("/hosts/embedded/edit/", {"uri": "test:///default", "enabled": "on",
                                                                     "migration_address": address})
    assert response.status_code == 400
    body = response.content.decode()
    assert "Give an IP address or a DNS name" in body or "not a wildcard" in body
    embedded_host.refresh_from_db()
    assert embedded_host.migration_address == ""


def test_a_disabled_host_drops_out_of_the_vm_list(admin_user: User, embedded_host: Host):
    client = client_for(admin_user)
    client.post("/hosts/embedded/edit/", {"uri": "test:///default"})
    assert client.get("/domains/", {"all": "", "format": "json"}).json()["domains"] == []


def test_editing_an_unknown_host_is_404(admin_user: User):
    assert client_for(admin_user).get("/hosts/nosuch/edit/").status_code == 404


def test_delete_removes_the_host_its_grants_and_keeps_the_audit_trail(admin_user: User, tenant_user: User,
                                                                      tenant_grant: Grant):
    client = client_for(admin_user)
    response = client.post("/hosts/embedded/delete/")
    assert response.status_code == 302
    assert not Host.objects.exists()
    assert not Grant.objects.exists()
    entry = AuditEntry.objects.get(action="host.delete")
    assert (entry.result, entry.host, entry.host_name) == (AuditEntry.Result.SUCCEEDED, None, "embedded")
    assert "Host embedded removed from the dashboard." in client.get("/hosts/").content.decode()
    assert client_for(tenant_user).get("/domains/", {"all": "", "format": "json"}).json()["domains"] == []


def test_delete_from_htmx_redirects_the_browser(admin_user: User, embedded_host: Host):
    response = client_for(admin_user).post("/hosts/embedded/delete/", headers=HTMX)
    assert response.status_code == 200
    assert response["HX-Redirect"] == "/hosts/"
    assert not Host.objects.exists()


# --- Test connection ---


def test_test_connection_shows_the_libvirt_version_and_hostname(admin_user: User, embedded_host: Host):
    version, hostname = _hypervisor_facts()
    response = client_for(admin_user).post("/hosts/embedded/test/", headers=HTMX)
    assert response.status_code == 200
    body = response.content.decode()
    assert "<html" not in body  # only the result goes into the row
    assert f"libvirt {version}" in body
    assert f"host {hostname}" in body
    entry = AuditEntry.objects.get(action="host.test")
    assert entry.result == AuditEntry.Result.SUCCEEDED
    assert entry.message == f"libvirt {version} on {hostname}"


def test_test_connection_without_htmx_is_a_whole_page(admin_user: User, embedded_host: Host):
    version, _hostname = _hypervisor_facts()
    response = client_for(admin_user).post("/hosts/embedded/test/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "<html" in body
    assert "Connection test: embedded" in body
    assert f"libvirt {version}" in body


def test_test_connection_to_an_unreachable_host_gives_the_admin_libvirts_reason(admin_user: User,
                                                                               closed_loopback_uri: str):
    Host.objects.create(name="down", uri=closed_loopback_uri)
    response = client_for(admin_user).post("/hosts/down/test/", headers=HTMX)
    assert response.status_code == 200
    body = response.content.decode()
    assert "The host cannot be reached right now." in body
    # Admins run the hosts: they read why, as libvirt says it (the address, not the URI).
    port = str(urlsplit(closed_loopback_uri).port)
    assert escape(f"unable to connect to server at '127.0.0.1:{port}': Connection refused") in body
    assert "qemu+tcp" not in body
    entry = AuditEntry.objects.get(action="host.test")
    assert entry.result == AuditEntry.Result.FAILED
    assert f"'127.0.0.1:{port}': Connection refused" in entry.message  # the audit row keeps it in full


# --- An unreachable host next to a working one ---


def test_an_unreachable_host_is_flagged_and_the_others_vms_still_listed(settings, admin_user: User,
                                                                      embedded_host: Host,
                                                                      silent_loopback_uri: str):
    settings.HOST_DEADLINE_SECONDS = 0.5
    Host.objects.create(name="hung", uri=silent_loopback_uri)
    client = client_for(admin_user)

    started = time.monotonic()
    response = client.get("/domains/", {"all": ""})
    elapsed = time.monotonic() - started

    assert response.status_code == 200
    assert elapsed < settings.HOST_DEADLINE_SECONDS + 1.5
    body = response.content.decode()
    assert 'class="message warning host-unreachable" data-host="hung"' in body
    assert "Host hung: The host did not answer in time." in body
    assert 'data-name="test"' in body
    assert str(urlsplit(silent_loopback_uri).port) not in body

    started = time.monotonic()
    listing = client.get("/domains/", {"all": "", "format": "json"}).json()
    assert time.monotonic() - started < settings.HOST_DEADLINE_SECONDS + 1.5
    assert listing["unreachable_hosts"] == [{"host": "hung", "error": "The host did not answer in time."}]
    assert [(row["host"], row["name"]) for row in listing["domains"]] == [("embedded", "test")]


def test_a_refused_host_is_flagged_at_once(admin_user: User, operator_user: User, embedded_host: Host,
                                           closed_loopback_uri: str):
    """Admins read libvirt's reason; an operator the summary, without the host's address."""
    Host.objects.create(name="down", uri=closed_loopback_uri)
    listing = client_for(admin_user).get("/domains/", {"all": "", "format": "json"}).json()
    [down] = listing["unreachable_hosts"]
    assert down["host"] == "down" and down["error"].startswith("The host cannot be reached right now. libvirt: ")
    assert "Connection refused" in down["error"]
    assert [row["name"] for row in listing["domains"]] == ["test"]
    seen_by_operator = client_for(operator_user).get("/domains/", {"all": "", "format": "json"}).json()
    assert seen_by_operator["unreachable_hosts"] == [{"host": "down", "error": "The host cannot be reached right now."}]


def test_a_tenant_is_not_told_about_hosts_it_has_no_vm_on(tenant_user: User, tenant_grant: Grant,
                                                          closed_loopback_uri: str):
    Host.objects.create(name="down", uri=closed_loopback_uri)
    listing = client_for(tenant_user).get("/domains/", {"all": "", "format": "json"}).json()
    assert listing["unreachable_hosts"] == []
    assert [row["uuid"] for row in listing["domains"]] == [TEST_DOMAIN_UUID]


def test_the_vm_page_of_an_unreachable_host_says_so_and_why_to_an_admin_only(admin_user: User, tenant_user: User,
                                                                            closed_loopback_uri: str):
    down = Host.objects.create(name="down", uri=closed_loopback_uri)
    Grant.objects.create(host=down, domain_uuid=TEST_DOMAIN_UUID, user=tenant_user, can_operate=True)
    port = str(urlsplit(closed_loopback_uri).port)
    for user, why_shown in ((admin_user, True), (tenant_user, False)):
        response = client_for(user).get(f"/domains/down/{TEST_DOMAIN_UUID}/")
        assert response.status_code == 503
        body = response.content.decode()
        assert "Host down: The host cannot be reached right now." in body
        assert ("Connection refused" in body) is why_shown
        assert (f"127.0.0.1:{port}" in body) is why_shown
        assert "qemu+tcp" not in body


# --- manage.py hosts ---


def _hosts(*args: str) -> str:
    out = StringIO()
    call_command("hosts", *args, stdout=out)
    return out.getvalue()


def test_hosts_command_needs_an_admin(db: None):
    with pytest.raises(CommandError, match="Create an admin first"):
        _hosts("list")


def test_hosts_command_adds_lists_updates_and_removes(admin_user: User):
    assert _hosts("add", "lab2", "test:///default") == "lab2: test:///default\n"
    assert Host.objects.get(name="lab2").enabled
    entry = AuditEntry.objects.get(action="host.register")
    assert (entry.actor, entry.result) == (admin_user, AuditEntry.Result.SUCCEEDED)

    _hosts("add", "lab2", "test:///default", "--disabled")
    assert not Host.objects.get(name="lab2").enabled
    assert AuditEntry.objects.get(action="host.update").result == AuditEntry.Result.SUCCEEDED
    assert _hosts("list") == "lab2\ttest:///default\tdisabled\n"
    _hosts("add", "lab2", "test:///default", "--migration-address", "10.1.2.3")
    assert Host.objects.get(name="lab2").migration_address == "10.1.2.3"

    _hosts("remove", "lab2")
    assert not Host.objects.exists()
    assert AuditEntry.objects.get(action="host.delete").result == AuditEntry.Result.SUCCEEDED
    assert _hosts("list") == ""


def test_hosts_command_refuses_a_bad_uri_with_the_reason(admin_user: User):
    with pytest.raises(CommandError, match="Do not put a password in the URI"):
        _hosts("add", "lab2", "qemu+ssh://root:hunter2@kvm1.example/system")
    assert not Host.objects.exists()


def test_hosts_command_remove_of_an_unknown_host_says_so(admin_user: User):
    with pytest.raises(CommandError, match="No host named nosuch."):
        _hosts("remove", "nosuch")


# --- manage.py bootstrap ---


def _bootstrap(*args: str) -> str:
    out = StringIO()
    call_command("bootstrap", *args, stdout=out)
    return out.getvalue()


def test_bootstrap_creates_an_admin_and_the_embedded_host_once(settings, tmp_path, db: None):
    settings.VAR_DIR = tmp_path
    first = _bootstrap()
    password_file = tmp_path / "admin-password"
    password = password_file.read_text().strip()
    assert first == f"Admin login: admin / {password}\n"
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600

    admin = User.objects.get(username="admin")
    assert admin.is_admin and admin.is_staff and admin.is_superuser
    assert list(Host.objects.values_list("name", "uri")) == [("embedded", "test:///default")]
    assert Client().post("/accounts/login/", {"username": "admin", "password": password}).status_code == 302

    assert _bootstrap() == first
    assert User.objects.count() == 1
    assert Host.objects.count() == 1
    assert AuditEntry.objects.filter(action="host.register").count() == 1


def test_bootstrap_leaves_existing_hosts_alone(settings, tmp_path, db: None):
    settings.VAR_DIR = tmp_path
    Host.objects.create(name="lab1", uri="test:///default")
    _bootstrap()
    assert list(Host.objects.values_list("name", flat=True)) == ["lab1"]


def test_bootstrap_without_default_host(settings, tmp_path, db: None):
    settings.VAR_DIR = tmp_path
    _bootstrap("--no-default-host")
    assert not Host.objects.exists()
    assert User.objects.get(username="admin").is_admin
