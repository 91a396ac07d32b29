"""libvirt's errors, raised for real on test:///default, become the project's own with safe messages."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import libvirt
import pytest

from domains import virt
from domains.virt.connections import connection, translate
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
