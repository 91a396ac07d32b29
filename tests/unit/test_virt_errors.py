"""libvirt's errors, raised for real on test:///default, become the project's own with safe messages."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import libvirt
import pytest

from domains import virt
from domains.errors import error_message
from domains.virt import inventory
from domains.virt.connections import connection, translate
from domains.virt.errors import redact
from tests.conftest import TEST_DOMAIN_UUID, client_for

MISSING_UUID = "00000000-0000-4000-8000-00000000dead"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def conn() -> Iterator[libvirt.virConnect]:
    """A private connection to test:///default, closed after the test so its state does not leak."""
    opened = libvirt.open("test:///default")
    yield opened
    opened.close()


def raised_by(call) -> libvirt.libvirtError:
    with pytest.raises(libvirt.libvirtError) as caught:
        call()
    return caught.value


def assert_safe(error: virt.VirtError, *secrets: str) -> None:
    """Nothing that locates or authenticates to the host reaches the message a tenant reads."""
    text = str(error)
    for secret in ("test:///", "qemu", "://", *secrets):
        assert secret not in text


# --- No such domain ---


def test_an_unknown_uuid_is_domain_not_found(conn: libvirt.virConnect):
    error = raised_by(lambda: conn.lookupByUUIDString(MISSING_UUID))
    assert error.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN
    translated = translate(error)
    assert type(translated) is virt.DomainNotFound
    assert str(translated) == "The virtual machine no longer exists on this host."
    assert translated.detail == str(error)  # libvirt's own words are kept for the logs


def test_the_adapter_raises_domain_not_found():
    with pytest.raises(virt.DomainNotFound) as caught:
        virt.get_domain("test:///default", MISSING_UUID)
    assert_safe(caught.value)


def test_the_connection_context_translates_on_the_way_out():
    with pytest.raises(virt.DomainNotFound), connection("test:///default") as pooled:
        pooled.lookupByUUIDString(MISSING_UUID)


def test_a_missing_snapshot_is_not_reported_as_a_missing_vm(conn: libvirt.virConnect):
    error = raised_by(lambda: conn.lookupByName("test").snapshotLookupByName("nosuch", 0))
    assert error.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT
    message = str(translate(error))
    assert "snapshot" in message.lower()
    assert "virtual machine no longer exists" not in message


def test_reverting_a_missing_snapshot_tells_the_user_about_the_snapshot(admin_user, embedded_host):
    page = client_for(admin_user).post(f"/domains/embedded/{TEST_DOMAIN_UUID}/snapshots/nosuch/",
                                       {"action": "revert"}, follow=True)
    assert page.status_code == 200
    [message] = [str(message) for message in page.context["messages"]]
    assert "snapshot" in message.lower()
    assert "virtual machine no longer exists" not in message


# --- Invalid in the current state ---


def test_operation_invalid_keeps_libvirts_human_message(conn: libvirt.virConnect):
    dom = conn.lookupByName("test")
    dom.destroy()
    error = raised_by(dom.destroy)  # destroying a domain that is not running
    assert error.get_error_code() == libvirt.VIR_ERR_OPERATION_INVALID
    translated = translate(error)
    assert type(translated) is virt.OperationInvalid
    assert str(translated) == "Domain is not running."
    assert_safe(translated)


def test_the_adapter_raises_operation_invalid():
    with pytest.raises(virt.OperationInvalid, match=r"^Domain is not running\.$"), \
            connection("test:///default") as pooled:
        dom = pooled.lookupByName("test")
        dom.destroy()
        dom.managedSave()


# --- Other codes ---


def test_an_unsupported_call_is_operation_unsupported(conn: libvirt.virConnect):
    error = raised_by(lambda: conn.lookupByName("test").jobStats())
    assert error.get_error_code() == libvirt.VIR_ERR_NO_SUPPORT
    translated = translate(error)
    assert type(translated) is virt.OperationUnsupported
    assert str(translated) == "This host's hypervisor does not support that action."


def test_a_broken_definition_is_invalid_definition_with_libvirts_reason(conn: libvirt.virConnect):
    error = raised_by(lambda: conn.defineXML("<domain"))
    assert error.get_error_code() in (libvirt.VIR_ERR_XML_ERROR, libvirt.VIR_ERR_XML_DETAIL)
    translated = translate(error)
    assert type(translated) is virt.InvalidDefinition
    assert "Couldn't find end of Start Tag domain" in str(translated)


def test_operation_failed_keeps_libvirts_human_message(conn: libvirt.virConnect):
    xml = conn.lookupByName("test").XMLDesc().replace("6695eb01", "7695eb01")
    error = raised_by(lambda: conn.defineXML(xml))  # same name, other UUID
    assert error.get_error_code() == libvirt.VIR_ERR_OPERATION_FAILED
    translated = translate(error)
    assert type(translated) is virt.VirtError
    assert str(translated).startswith("Domain 'test' already exists")
    assert "operation failed" not in str(translated)
    assert_safe(translated)


def test_an_unmapped_error_gets_the_generic_message_and_keeps_the_detail(conn: libvirt.virConnect):
    error = raised_by(lambda: conn.lookupByName("test").shutdownFlags(libvirt.VIR_DOMAIN_SHUTDOWN_GUEST_AGENT))
    assert error.get_error_code() == libvirt.VIR_ERR_INVALID_ARG  # the test driver has no guest agent
    translated = translate(error)
    assert type(translated) is virt.VirtError
    assert str(translated) == "The hypervisor could not complete the request."
    assert "testDomainShutdownFlags" in translated.detail


# --- The host cannot be reached ---


def test_a_refused_connection_is_host_unreachable_without_the_uri(closed_loopback_uri: str):
    port = str(urlsplit(closed_loopback_uri).port)
    error = raised_by(lambda: libvirt.open(closed_loopback_uri))
    assert error.get_error_code() == libvirt.VIR_ERR_SYSTEM_ERROR
    assert f"127.0.0.1:{port}" in str(error)  # libvirt names the address...

    translated = translate(error)
    assert type(translated) is virt.HostUnreachable
    assert str(translated) == "The host cannot be reached right now."
    assert_safe(translated, "127.0.0.1", port)  # ...the user's message does not
    assert f"127.0.0.1:{port}" in translated.detail


@pytest.mark.parametrize("call", [virt.host_facts, virt.list_domains, lambda uri: virt.get_domain(uri, MISSING_UUID)])
def test_every_adapter_call_on_a_refused_host_is_host_unreachable(closed_loopback_uri: str, call):
    with pytest.raises(virt.HostUnreachable) as caught:
        call(closed_loopback_uri)
    assert_safe(caught.value, "127.0.0.1", str(urlsplit(closed_loopback_uri).port))


def test_a_host_that_never_answers_is_unreachable_within_the_deadline(silent_loopback_uri: str):
    results = virt.fan_out.run({"hung": silent_loopback_uri, "ok": "test:///default"}, virt.list_domains, 0.3)
    assert isinstance(results["hung"], virt.HostUnreachable)
    assert str(results["hung"]) == "The host did not answer in time."
    working = results["ok"]
    assert not isinstance(working, virt.VirtError)
    assert [record.name for record in working] == ["test"]


# --- Failures libvirt reports for the machine, not the connection (messages measured on the lab:
# --- libvirt 9.0.0, QEMU 7.2, TCG), and who reads them how ---

MEMORY = ("internal error: process exited while connecting to monitor: 2026-12-01T04:20:49.121374Z "
          "qemu-system-x86_64: cannot set up guest memory 'pc.ram': Cannot allocate memory")
KERNEL = ("internal error: process exited while connecting to monitor: qemu: could not open kernel file "
          "'/var/lib/vmportal-lab/shared/vmlinuz-gone': No such file or directory")
VNC_PORT = ("internal error: process exited while connecting to monitor: 2026-12-01T04:20:49.250374Z "
            "qemu-system-x86_64: -vnc 127.0.0.1:77,audiodev=audio1: Failed to find an available port: "
            "Address already in use")
DISK = ("Cannot access storage file '/var/lib/vmportal-lab/shared/nonexistent.qcow2' (as uid:0, gid:0): "
        "No such file or directory")
PEER_REFUSED = "unable to connect to server at '127.0.0.1:16509': Connection refused"
CLOSED = "internal error: client socket is closed"


def libvirt_error(code: int, domain: int, message: str, str2: str | None = None) -> libvirt.libvirtError:
    """A libvirtError as libvirt raises it (code, domain, message, level, str1..3, int1..2)."""
    error = libvirt.libvirtError.__new__(libvirt.libvirtError)
    Exception.__init__(error, message)
    error.err = (code, domain, message, libvirt.VIR_ERR_ERROR, "%s", str2 or message, None, -1, -1)
    return error


@pytest.mark.parametrize(("message", "reason"), [
    (MEMORY, "cannot set up guest memory 'pc.ram': Cannot allocate memory"),
    (KERNEL, "could not open kernel file [host path]: No such file or directory"),
    (VNC_PORT, "-vnc [address],audiodev=audio1: Failed to find an available port: Address already in use"),
])
def test_a_start_qemu_refused_says_why_and_the_redacted_reason_keeps_it(message: str, reason: str):
    translated = translate(libvirt_error(libvirt.VIR_ERR_INTERNAL_ERROR, libvirt.VIR_FROM_QEMU, message))
    assert type(translated) is virt.VirtError
    assert translated.full_message == f"The hypervisor could not complete the request. libvirt: {message}"
    assert reason in translated.redacted_message
    assert translated.redacted_message.startswith("The hypervisor could not complete the request. libvirt: ")
    assert_safe(translated, "/var/lib", "127.0.0.1", "2026-12-01")
    for secret in ("/var/lib", "127.0.0.1", "2026-12-01"):
        assert secret not in translated.redacted_message


def test_a_missing_storage_file_is_about_the_machine_not_an_unreachable_host():
    # VIR_ERR_SYSTEM_ERROR, as a refused connection is: the error domain tells them apart.
    error = libvirt_error(libvirt.VIR_ERR_SYSTEM_ERROR, libvirt.VIR_FROM_STORAGE, DISK)
    translated = translate(error)
    assert type(translated) is virt.VirtError
    assert "Cannot access storage file [host path] (as uid:0, gid:0): No such file or directory" in \
        translated.redacted_message
    assert "/var/lib/vmportal-lab/shared/nonexistent.qcow2" in translated.full_message


@pytest.mark.parametrize(("code", "message"), [
    (libvirt.VIR_ERR_SYSTEM_ERROR, PEER_REFUSED),
    (libvirt.VIR_ERR_SYSTEM_ERROR, "Cannot write data: Broken pipe"),
    (libvirt.VIR_ERR_INTERNAL_ERROR, CLOSED),  # the call after a connection broke
])
def test_the_transport_failing_is_host_unreachable(code: int, message: str):
    translated = translate(libvirt_error(code, libvirt.VIR_FROM_RPC, message))
    assert type(translated) is virt.HostUnreachable
    assert translated.redacted_message == "The host cannot be reached right now."  # nothing but the host to tell
    assert translated.full_message == f"The host cannot be reached right now. libvirt: {message}"


def test_a_peer_the_host_could_not_reach_is_not_this_host_being_unreachable():
    """A peer-to-peer migration's destination refusing comes back over a connection that still works."""
    with pytest.raises(virt.VirtError) as caught, connection("test:///default") as pooled:
        raise libvirt_error(libvirt.VIR_ERR_SYSTEM_ERROR, libvirt.VIR_FROM_RPC, PEER_REFUSED)
    assert type(caught.value) is virt.VirtError
    assert "unable to connect to server at [address]: Connection refused" in caught.value.redacted_message
    assert virt.pool.get("test:///default").conn is pooled  # the working connection is kept


def test_libvirts_own_words_in_a_summary_are_redacted_too():
    uri = "qemu+ssh://root@kvm7.example.net/system?keyfile=/root/.ssh/id_lab"
    message = f"operation failed: Failed to connect to remote libvirt URI {uri}: Cannot recv data"
    translated = translate(libvirt_error(libvirt.VIR_ERR_OPERATION_FAILED, libvirt.VIR_FROM_QEMU, message,
                                         f"Failed to connect to remote libvirt URI {uri}: Cannot recv data"))
    assert str(translated) == "Failed to connect to remote libvirt URI [URI]: Cannot recv data."
    assert translated.redacted_message == str(translated)
    assert uri in translated.full_message


@pytest.mark.parametrize(("message", "redacted"), [
    (DISK, "Cannot access storage file [host path] (as uid:0, gid:0): No such file or directory"),
    (PEER_REFUSED, "unable to connect to server at [address]: Connection refused"),
    ("unable to connect to server at 'kvm7.example.net:16509': Connection refused",
     "unable to connect to server at [address]: Connection refused"),
    ("unable to connect to server at '[::1]:16509': Connection refused",
     "unable to connect to server at [address]: Connection refused"),
    ("Failed to connect socket to '/run/vmportal-lab/sockets/lab2/libvirt-sock': No such file or directory",
     "Failed to connect socket to [host path]: No such file or directory"),
    ("Unable to connect to monitor socket /var/lib/libvirt/qemu/domain-3-x/monitor.sock: Connection refused",
     "Unable to connect to monitor socket [host path]: Connection refused"),
    ("Cannot recv data: ssh: connect to host 10.0.0.7 port 22: Connection refused",
     "Cannot recv data: ssh: connect to host [address] port 22: Connection refused"),
    ("Cannot recv data: ssh: Could not resolve hostname kvm7.example.net: Name or service not known",
     "Cannot recv data: ssh: Could not resolve hostname [address]: Name or service not known"),
    ("qemu-system-x86_64: -drive file=/srv/a.qcow2,format=qcow2: Could not open '/srv/a.qcow2': Permission denied",
     "qemu-system-x86_64: -drive file=[host path],format=qcow2: Could not open [host path]: Permission denied"),
    ("domain 'web' already exists with uuid 6695eb01-f6a4-8304-79aa-97f2502e193f",
     "domain 'web' already exists with uuid [UUID]"),
    # Nothing to take out: words that merely contain a slash, and libvirt's own names, stay.
    ("Cannot write data: Input/output error", "Cannot write data: Input/output error"),
    ("requested operation is not valid: domain is not running",
     "requested operation is not valid: domain is not running"),
])
def test_redaction_removes_paths_uris_sockets_and_addresses(message: str, redacted: str):
    assert redact(message) == redacted


def test_admins_read_libvirts_message_and_everybody_else_the_redacted_one(admin_user, operator_user, tenant_user):
    error = translate(libvirt_error(libvirt.VIR_ERR_INTERNAL_ERROR, libvirt.VIR_FROM_QEMU, KERNEL))
    assert error_message(user=admin_user, error=error) == error.full_message
    assert "/var/lib/vmportal-lab/shared/vmlinuz-gone" in error_message(user=admin_user, error=error)
    for user in (operator_user, tenant_user):
        assert error_message(user=user, error=error) == error.redacted_message
        assert error_message(user=user, error=error.full_message) == error.redacted_message  # as in the audit log


class ErrorClearedOnce:
    """A domain whose first title read fails as when a collected cycle freed a libvirt object between
    the failed call and libvirt-python reading the thread's last error: no code, libvirt's bare words."""

    def __init__(self, dom: libvirt.virDomain) -> None:
        self._dom = dom
        self.reads = 0

    def metadata(self, kind: int, uri: str | None) -> str:
        self.reads += 1
        if self.reads == 1:
            libvirt.virResetLastError()
            raise libvirt.libvirtError("virDomainGetMetadata() failed")
        return self._dom.metadata(kind, uri)


def test_a_title_read_whose_error_was_cleared_reads_again(conn: libvirt.virConnect):
    dom = ErrorClearedOnce(conn.lookupByUUIDString(TEST_DOMAIN_UUID))
    assert raised_by(lambda: dom._dom.metadata(libvirt.VIR_DOMAIN_METADATA_TITLE, None)).get_error_code() == (
        libvirt.VIR_ERR_NO_DOMAIN_METADATA
    )
    assert inventory._title(dom) == ""
    assert dom.reads == 2


def test_a_title_read_that_keeps_failing_fails(conn: libvirt.virConnect):
    # A transient domain of its own, destroyed: gone, whatever state other tests left test:///default in.
    dom = conn.createXML("<domain type='test'><name>gone-before-its-title</name><memory>8192</memory>"
                         "<os><type>hvm</type></os></domain>")
    dom.destroy()
    assert raised_by(lambda: inventory._title(dom)).get_error_code() == libvirt.VIR_ERR_NO_DOMAIN
