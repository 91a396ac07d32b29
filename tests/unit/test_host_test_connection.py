""""Test connection" on the Hosts page says in words why a host cannot be reached, and what it is when it answers.

Every failure is real and local: an unresolvable name, loopback ports that refuse, stay silent, or answer
TLS with a certificate from no CA we trust, a socket path that does not exist.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest
from django.utils.html import escape

from accounts.models import User
from audit.models import AuditEntry
from domains import virt
from domains.models import Host
from domains.virt.connections import unreachable_cause
from tests.conftest import client_for

HTMX = {"HX-Request": "true"}

DNS = "The host&#x27;s name or address was not found (DNS)."
REFUSED = "The host refused the connection: nothing listens on that port."
NO_LIBVIRTD = "libvirtd is not running there: its socket is missing or nothing listens on it."
TLS_REFUSED = ("TLS was refused: the host&#x27;s certificate is not from the configured CA, "
               "or the port does not speak TLS.")


@pytest.fixture(autouse=True)
def fast_password_hashing(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _test(admin: User, uri: str) -> str:
    """The result the admin's "Test connection" button puts in the host's row."""
    Host.objects.create(name="probe", uri=uri)
    response = client_for(admin).post("/hosts/probe/test/", headers=HTMX)
    assert response.status_code == 200
    return response.content.decode()


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA and a client certificate from it (libvirt's pkipath layout), and a server certificate from no CA."""
    pki = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=vmportal test CA",
             "-keyout", pki / "cakey.pem", "-out", pki / "cacert.pem")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=dashboard",
             "-keyout", pki / "clientkey.pem", "-out", pki / "client.csr")
    _openssl("x509", "-req", "-days", "2", "-in", pki / "client.csr", "-CA", pki / "cacert.pem",
             "-CAkey", pki / "cakey.pem", "-CAcreateserial", "-out", pki / "clientcert.pem")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
             "-keyout", pki / "selfkey.pem", "-out", pki / "selfcert.pem")
    return pki


@pytest.fixture
def self_signed_tls_port(pki: Path) -> Iterator[int]:
    """A loopback port where openssl s_server speaks TLS with a self-signed certificate."""
    port = _free_port()
    server = subprocess.Popen(
        ["openssl", "s_server", "-quiet", "-accept", f"127.0.0.1:{port}",
         "-cert", str(pki / "selfcert.pem"), "-key", str(pki / "selfkey.pem")],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline, "openssl s_server did not start"
                time.sleep(0.05)
        yield port
    finally:
        server.kill()
        server.wait()


@pytest.fixture
def garbage_port() -> Iterator[int]:
    """A loopback port where a plain TCP server answers anything with a line of HTTP."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)

    def serve() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            with client:
                client.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n" * 20)

    threading.Thread(target=serve, daemon=True).start()
    yield int(listener.getsockname()[1])
    listener.close()


def test_a_name_that_does_not_resolve(admin_user: User):
    body = _test(admin_user, "qemu+tcp://no-such-host.invalid/system")
    assert DNS in body
    assert "Name or service not known" in body  # and libvirt's own words, for the admin


def test_a_closed_port(admin_user: User, closed_loopback_uri: str):
    assert REFUSED in _test(admin_user, closed_loopback_uri)


def test_ssh_to_a_closed_port_is_refused_too(admin_user: User):
    body = _test(admin_user, f"qemu+ssh://root@127.0.0.1:{_free_port()}/system")
    assert REFUSED in body
    assert "ssh: connect to host" in body


def test_a_missing_socket_is_no_libvirtd(admin_user: User):
    body = _test(admin_user, "qemu+unix:///system?socket=/nonexistent/libvirt-sock")
    assert NO_LIBVIRTD in body
    assert "No such file or directory" in body


def test_a_socket_nobody_listens_on_is_no_libvirtd(admin_user: User, tmp_path: Path):
    """A daemon that stopped without removing its socket: the path is there and refuses."""
    path = tmp_path / "libvirt-sock"
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(str(path))
    body = _test(admin_user, f"qemu+unix:///system?socket={path}")
    assert NO_LIBVIRTD in body
    assert "Connection refused" in body


def test_a_certificate_from_no_trusted_ca_is_refused(admin_user: User, pki: Path, self_signed_tls_port: int):
    body = _test(admin_user, f"qemu+tls://127.0.0.1:{self_signed_tls_port}/system?pkipath={pki}")
    assert TLS_REFUSED in body
    assert escape("Failed to verify peer's certificate") in body


def test_a_port_that_does_not_speak_tls_is_refused(admin_user: User, pki: Path, garbage_port: int):
    body = _test(admin_user, f"qemu+tls://127.0.0.1:{garbage_port}/system?pkipath={pki}")
    assert TLS_REFUSED in body
    assert "TLS handshake failed" in body


def test_tls_without_a_ca_on_the_dashboard_says_so(admin_user: User, tmp_path: Path):
    body = _test(admin_user, f"qemu+tls://127.0.0.1:{_free_port()}/system?pkipath={tmp_path}")
    assert "TLS is not set up on the dashboard&#x27;s side: a CA or client certificate is missing." in body


def test_a_silent_port_times_out_within_the_deadline(settings, admin_user: User, silent_loopback_uri: str):
    virt.pool.open_timeout = 0.5
    try:
        started = time.monotonic()
        body = _test(admin_user, silent_loopback_uri)
        elapsed = time.monotonic() - started
    finally:
        virt.pool.open_timeout = settings.HOST_DEADLINE_SECONDS
    assert "The host did not answer in time." in body
    assert elapsed < 2.0
    assert AuditEntry.objects.get(action="host.test").result == AuditEntry.Result.FAILED


@pytest.mark.parametrize(
    ("message", "cause"),
    [
        # What libvirt passes on from ssh when the login or the host's key is refused (OpenSSH's words).
        ("Cannot recv data: root@10.0.0.2: Permission denied (publickey,password).: Connection reset by peer",
         "SSH refused the login: the key was not accepted."),
        ("Cannot recv data: No ED25519 host key is known for 10.0.0.2 and you have requested strict checking.\r\n"
         "Host key verification failed.: Connection reset by peer",
         "SSH refused the host's key: it is not the one pinned in known_hosts."),
        ("Cannot recv data: ssh: connect to host 10.0.0.2 port 22: Connection timed out: Connection reset by peer",
         "The host did not answer in time."),
        ("Cannot recv data: ssh: connect to host 10.0.0.2 port 22: No route to host: Connection reset by peer",
         "There is no network route to the host."),
        # libvirtd down on the far side of SSH: virt-ssh-helper (or nc) says its socket is missing.
        ("Cannot recv data: Failed to connect socket to '/var/run/libvirt/libvirt-sock': No such file or "
         "directory: Connection reset by peer",
         "libvirtd is not running there: its socket is missing or nothing listens on it."),
        ("End of file while reading data: Input/output error", ""),
    ],
)
def test_ssh_failures_are_told_apart(message: str, cause: str):
    assert unreachable_cause(message) == cause


_INVENTORY = """<node xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>
  <cpu><mhz>2000</mhz><model>Lab-CPU-9000</model><active>6</active><max>6</max><nodes>1</nodes>
       <sockets>1</sockets><cores>6</cores><threads>1</threads></cpu>
  <memory>8388608</memory>
  <domain type='test'><name>up</name><memory>65536</memory><os><type>hvm</type></os></domain>
  <domain type='test'><name>off1</name><memory>65536</memory><os><type>hvm</type></os>
    <test:runstate>5</test:runstate></domain>
  <domain type='test'><name>off2</name><memory>65536</memory><os><type>hvm</type></os>
    <test:runstate>5</test:runstate></domain>
</node>"""


def test_a_host_that_answers_shows_its_versions_cpu_memory_and_vms(admin_user: User, tmp_path: Path):
    inventory = tmp_path / "node.xml"
    inventory.write_text(_INVENTORY)
    uri = f"test://{inventory}"
    conn = libvirt.open(uri)
    try:  # the versions, as libvirt itself gives them
        versions = [conn.getLibVersion(), conn.getVersion()]
        hypervisor = conn.getType()
    finally:
        conn.close()
    library, qemu = (f"{n // 1_000_000}.{n // 1000 % 1000}.{n % 1000}" for n in versions)
    body = _test(admin_user, uri)
    assert f"libvirt {library} · {hypervisor} {qemu}" in body
    assert "6 CPUs (Lab-CPU-9000) · 8192 MiB · 3 VMs (1 running)" in body
