"""Storage pages on test:///default: pools and volumes as each role sees them, the quota, the ownership rules,
and uploads in chunks.

test:///default creates, deletes and lists volumes and runs pools, but has no resize, upload or download:
those answer with libvirt's refusal here (asserted), and the upload's session logic is tested with the one
libvirt call, `upload_to_volume`, recording what it was given; tests/integration/test_storage_lab.py and
tests/e2e/test_volume_upload.py send real bytes to real hosts.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import libvirt
import pytest
from django.core.management import call_command
from django.utils import timezone

from accounts.models import User
from audit.models import AuditEntry
from domains.models import Grant, Host, OwnedVolume
from domains.virt import storage as vstorage
from storage.models import UploadSession
from tests.conftest import client_for
from tests.support.streaming import read_all
from tests.unit.conftest import GIB, volumes_in

POOL_PAGE = "/hosts/embedded/pools/default-pool/"
UPLOADS = POOL_PAGE + "uploads/"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def audit_rows(user: User) -> list[tuple[str, str]]:
    return list(AuditEntry.objects.filter(actor=user).order_by("pk").values_list("action", "result"))


# --- Who sees which pools and volumes. ---


def test_admins_see_every_pool_with_its_type_state_and_size(storage, admin_user):
    assert 'href="/hosts/embedded/pools/"' in client_for(admin_user).get("/hosts/embedded/").content.decode()
    page = client_for(admin_user).get("/hosts/embedded/pools/").content.decode()
    assert 'data-pool="default-pool"' in page and 'data-pool="images"' in page
    assert "<td>dir</td><td>active</td>" in page
    assert "100 GiB" in page  # default-pool's capacity
    assert "Define a directory pool" in page


def test_a_tenant_sees_its_allowance_pool_and_the_shared_images_only(storage, hypervisor, tenant_user):
    hypervisor.storagePoolDefineXML("<pool type='dir'><name>secret</name><target><path>/secret</path></target>"
                                    "</pool>", 0).create(0)
    client = client_for(tenant_user)
    define = client.get("/domains/new/", {"host": "embedded"}).content.decode()
    assert 'href="/hosts/embedded/pools/">Volumes and install images on embedded</a>' in define
    listing = client.get("/hosts/embedded/pools/").content.decode()
    assert 'data-pool="default-pool"' in listing and 'data-pool="images"' in listing
    assert "secret" not in listing and "Define a directory pool" not in listing
    assert client.get("/hosts/embedded/pools/secret/").status_code == 404

    pool = client.get(POOL_PAGE).content.decode()
    assert 'data-volume="tina.qcow2"' in pool
    assert "otto.qcow2" not in pool and "admins.qcow2" not in pool
    assert "Your volumes</dt><dd>4 GiB of 10 GiB" in pool
    images = client.get("/hosts/embedded/pools/images/").content.decode()
    assert 'data-volume="debian.iso"' in images
    assert "Delete" not in images and "New volume" not in images  # a shared image is used, not managed


def test_a_tenant_without_storage_is_told_the_pages_do_not_exist(hypervisor, tenant_user, embedded_host):
    client = client_for(tenant_user)
    assert client.get("/hosts/embedded/pools/").status_code == 404
    assert client.get(POOL_PAGE).status_code == 404


def test_another_tenants_volume_is_the_same_404_as_a_missing_one(storage, tenant_user):
    client = client_for(tenant_user)
    foreign = client.get(POOL_PAGE + "volumes/otto.qcow2/")
    missing = client.get(POOL_PAGE + "volumes/nothing.qcow2/")
    assert foreign.status_code == missing.status_code == 404


# --- Create, resize, delete. ---


def test_a_tenant_creates_a_volume_within_its_quota_and_owns_it(storage, hypervisor, tenant_user):
    client = client_for(tenant_user)
    response = client.post(POOL_PAGE, {"name": "data.qcow2", "size_gib": "2", "format": "qcow2"})
    assert response.status_code == 302
    assert "data.qcow2" in volumes_in(hypervisor)
    assert OwnedVolume.objects.get(name="data.qcow2").owner == tenant_user
    page = client.get(POOL_PAGE).content.decode()
    assert 'data-volume="data.qcow2"' in page and "Volume data.qcow2 created." in page
    assert "Your volumes</dt><dd>6 GiB of 10 GiB" in page


def test_a_volume_over_the_quota_is_refused_in_words_and_the_form_keeps_its_values(storage, hypervisor, tenant_user):
    response = client_for(tenant_user).post(POOL_PAGE, {"name": "big.qcow2", "size_gib": "7", "format": "raw"})
    assert response.status_code == 400
    body = response.content.decode()
    assert "Your volumes take 4 of your 10 GiB; 7 GiB more is too much." in body
    assert 'value="big.qcow2"' in body and 'value="7"' in body
    assert "big.qcow2" not in volumes_in(hypervisor)


@pytest.mark.parametrize(("data", "field_error"), [
    ({"name": "tina.qcow2", "size_gib": "1", "format": "qcow2"},
     "Pool default-pool already has a volume named tina.qcow2."),
    ({"name": "../etc", "size_gib": "1", "format": "qcow2"}, "Letters, digits, and . _ + - after the first character."),
    ({"name": "zero", "size_gib": "0", "format": "qcow2"}, "Ensure this value is greater than or equal to 0.001."),
])
def test_bad_volume_input_is_a_field_error(storage, hypervisor, admin_user, data, field_error):
    response = client_for(admin_user).post(POOL_PAGE, data)
    assert response.status_code == 400
    assert field_error in response.content.decode()


def test_a_tenant_cannot_create_in_a_shared_image_pool(storage, hypervisor, tenant_user):
    response = client_for(tenant_user).post("/hosts/embedded/pools/images/", {"name": "mine.iso", "size_gib": "1",
                                                                               "format": "raw"})
    assert response.status_code == 400
    assert "New volumes go to default-pool." in response.content.decode()
    assert volumes_in(hypervisor, "images") == {"debian.iso"}


def test_a_volume_only_grows(storage, tenant_user):
    client = client_for(tenant_user)
    smaller = client.post(POOL_PAGE + "volumes/tina.qcow2/", {"size_gib": "3"})
    assert smaller.status_code == 400
    assert "tina.qcow2 has 4 GiB; volumes only grow, so give a larger size." in smaller.content.decode()
    too_big = client.post(POOL_PAGE + "volumes/tina.qcow2/", {"size_gib": "11"})
    assert "Your volumes take 4 of your 10 GiB; 7 GiB more is too much." in too_big.content.decode()
    # Within the quota, the request reaches libvirt: the test driver cannot resize, and says so.
    allowed = client.post(POOL_PAGE + "volumes/tina.qcow2/", {"size_gib": "6"})
    assert "does not support that action" in allowed.content.decode()
    assert OwnedVolume.objects.get(name="tina.qcow2").capacity_bytes == 4 * GIB


def test_a_tenant_deletes_its_own_volume_and_not_another_tenants(storage, hypervisor, tenant_user):
    client = client_for(tenant_user)
    assert client.post(POOL_PAGE + "volumes/otto.qcow2/delete/").status_code == 404
    assert "otto.qcow2" in volumes_in(hypervisor)
    assert client.post(POOL_PAGE + "volumes/debian.iso/delete/").status_code == 404  # not in that pool
    assert client.post("/hosts/embedded/pools/images/volumes/debian.iso/delete/").status_code == 404  # shared

    response = client.post(POOL_PAGE + "volumes/tina.qcow2/delete/", follow=True)
    assert "Volume tina.qcow2 deleted." in response.content.decode()
    assert "tina.qcow2" not in volumes_in(hypervisor)
    assert not OwnedVolume.objects.filter(name="tina.qcow2").exists()
    assert audit_rows(tenant_user) == [("volume.delete", "denied")] * 3 + [("volume.delete", "succeeded")]


def test_a_volume_a_machine_uses_is_not_deleted(storage, hypervisor, admin_user):
    hypervisor.defineXML("<domain type='test'><name>user</name><memory>65536</memory><os><type>hvm</type></os>"
                         "<devices><disk type='file' device='disk'><source file='/default-pool/admins.qcow2'/>"
                         "<target dev='vda'/></disk></devices></domain>")
    response = client_for(admin_user).post(POOL_PAGE + "volumes/admins.qcow2/delete/", follow=True)
    assert "A machine on this host uses this volume; detach it or delete the machine first." in \
        response.content.decode()
    assert "admins.qcow2" in volumes_in(hypervisor)


# --- Pools. ---


def test_operators_stop_start_and_autostart_a_pool_and_tenants_cannot(storage, hypervisor, operator_user,
                                                                      tenant_user):
    action = "/hosts/embedded/pools/images/action/"
    assert client_for(tenant_user).post(action, {"action": "stop"}).status_code == 404
    assert audit_rows(tenant_user) == [("pool.stop", "denied")]
    client = client_for(operator_user)
    stopped = client.post(action, {"action": "stop"}, follow=True).content.decode()
    assert "Pool images stopped." in stopped and "The pool is not started: its volumes are not known." in stopped
    client.post(action, {"action": "start"})
    page = client.post(action, {"action": "autostart"}, follow=True).content.decode()
    assert "Starts with the host</dt><dd>yes" in page and 'data-volume="debian.iso"' in page


def test_an_admin_defines_a_directory_pool(hypervisor, admin_user):
    client = client_for(admin_user)
    response = client.post("/hosts/embedded/pools/", {"name": "scratch", "path": "/scratch"}, follow=True)
    assert "Pool scratch defined and started." in response.content.decode()
    assert "Starts with the host</dt><dd>yes" in response.content.decode()
    clash = client.post("/hosts/embedded/pools/", {"name": "scratch", "path": "/elsewhere"})
    assert clash.status_code == 400
    assert "embedded already has a pool named scratch." in clash.content.decode()
    relative = client.post("/hosts/embedded/pools/", {"name": "rel", "path": "srv/images"})
    assert "An absolute path on the host, such as /srv/images." in relative.content.decode()


# --- Uploads. ---


@pytest.fixture
def written(monkeypatch) -> list[tuple[str, int, bytes]]:
    """What the uploads wrote, in place of libvirt's storage stream (test:///default has none)."""
    chunks: list[tuple[str, int, bytes]] = []
    monkeypatch.setattr(vstorage, "upload_to_volume",
                        lambda uri, pool, name, offset, data: chunks.append((f"{pool}/{name}", offset, data)))
    return chunks


def start(client, name: str = "boot.iso", size: int = 10) -> dict:
    response = client.post(UPLOADS, {"name": name, "size_bytes": str(size)})
    assert response.status_code == 201, response.content
    return response.json()


def test_an_upload_goes_in_chunks_at_the_offset_it_stands_at(storage, hypervisor, tenant_user, written):
    client = client_for(tenant_user)
    session = start(client)
    assert "boot.iso" in volumes_in(hypervisor)
    assert OwnedVolume.objects.get(name="boot.iso").capacity_bytes == 10
    chunk = session["chunk_url"]
    first = client.post(f"{chunk}?offset=0", b"hello", content_type="application/octet-stream")
    assert first.json()["received"] == 5 and not first.json()["finished"]
    # A resent chunk (its answer was lost) does not go in twice: the browser learns where to go on.
    again = client.post(f"{chunk}?offset=0", b"hello", content_type="application/octet-stream")
    assert again.status_code == 409 and again.json()["received"] == 5
    assert client.get(session["status_url"]).json()["received"] == 5  # what a resuming page asks
    # A page opened afresh, given the same file and name, goes on with the same upload.
    resumed = start(client)
    assert (resumed["id"], resumed["received"]) == (session["id"], 5)
    last = client.post(f"{chunk}?offset=5", b"world", content_type="application/octet-stream")
    assert last.json() | {"finished": True, "received": 10} == last.json()
    assert written == [("default-pool/boot.iso", 0, b"hello"), ("default-pool/boot.iso", 5, b"world")]
    assert audit_rows(tenant_user) == [("volume.upload", "succeeded")] * 2 + [("volume.upload-finish", "succeeded")]
    too_far = client.post(f"{chunk}?offset=10", b"!", content_type="application/octet-stream")
    assert too_far.status_code == 409


def test_an_upload_over_the_quota_is_refused_before_any_volume_is_made(storage, hypervisor, tenant_user):
    response = client_for(tenant_user).post(UPLOADS, {"name": "huge.iso", "size_bytes": str(7 * GIB)})
    assert response.status_code == 400
    assert response.json()["errors"]["__all__"] == ["Your volumes take 4 of your 10 GiB; 7 GiB more is too much."]
    assert "huge.iso" not in volumes_in(hypervisor)
    clash = client_for(tenant_user).post(UPLOADS, {"name": "tina.qcow2", "size_bytes": "10"})
    assert clash.json()["errors"] == {"name": ["Pool default-pool already has a volume named tina.qcow2."]}


def test_an_upload_is_its_starters_alone(storage, tenant_user, other_tenant_user, written):
    session = start(client_for(tenant_user))
    other = client_for(other_tenant_user)
    assert other.get(session["status_url"]).status_code == 404
    assert other.post(f"{session['chunk_url']}?offset=0", b"x", content_type="application/octet-stream"
                      ).status_code == 404
    assert other.post(session["cancel_url"]).status_code == 404
    assert written == []
    assert audit_rows(other_tenant_user) == [("volume.upload-chunk", "denied"), ("volume.upload-cancel", "denied")]


def test_a_cancelled_upload_deletes_its_partial_volume(storage, hypervisor, tenant_user, written):
    client = client_for(tenant_user)
    session = start(client)
    client.post(f"{session['chunk_url']}?offset=0", b"hello", content_type="application/octet-stream")
    answer = client.post(session["cancel_url"]).json()
    assert answer == {"message": "Upload of boot.iso cancelled; its partial volume was deleted."}
    assert "boot.iso" not in volumes_in(hypervisor)
    assert not OwnedVolume.objects.filter(name="boot.iso").exists()


def test_an_abandoned_upload_is_deleted_with_its_volume_and_says_so(storage, hypervisor, tenant_user, written):
    client = client_for(tenant_user)
    session = start(client)
    UploadSession.objects.update(last_chunk_at=timezone.now() - timedelta(hours=1))
    assert client.get(session["status_url"]).json()["abandoned"] is True
    assert "got no data for a long time and will be deleted" in client.get(POOL_PAGE).content.decode()
    late = client.post(f"{session['chunk_url']}?offset=0", b"hello", content_type="application/octet-stream")
    assert late.status_code == 410
    assert late.json()["error"] == ("This upload got no data for 30 minutes; its partial volume was deleted. "
                                    "Start it again.")
    assert "boot.iso" not in volumes_in(hypervisor) and written == []
    assert client.get(session["status_url"]).status_code == 404


def test_the_cleanup_deletes_abandoned_uploads_only(storage, hypervisor, tenant_user, written):
    client = client_for(tenant_user)
    start(client, "old.iso")
    UploadSession.objects.update(last_chunk_at=timezone.now() - timedelta(hours=1))
    start(client, "new.iso")  # starting one clears the abandoned ones first
    assert "old.iso" not in volumes_in(hypervisor) and "new.iso" in volumes_in(hypervisor)
    UploadSession.objects.update(last_chunk_at=timezone.now() - timedelta(hours=1))
    call_command("expireuploads")
    assert "new.iso" not in volumes_in(hypervisor)
    assert UploadSession.objects.count() == 0
    assert [row for row in audit_rows(tenant_user) if row[0] == "volume.upload-expire"] == \
        [("volume.upload-expire", "succeeded")] * 2


def test_a_chunk_libvirt_refuses_says_why_and_may_be_sent_again(storage, tenant_user):
    client = client_for(tenant_user)
    session = start(client)
    refused = client.post(f"{session['chunk_url']}?offset=0", b"hello", content_type="application/octet-stream")
    assert refused.status_code == 502
    assert refused.json()["error"].startswith("This host's hypervisor does not support that action.")
    assert client.get(session["status_url"]).json()["received"] == 0


# --- Download (admins). ---


def test_an_admin_downloads_a_volume_streamed_from_libvirt(storage, admin_user, operator_user, monkeypatch):
    client = client_for(admin_user)
    url = POOL_PAGE + "volumes/tina.qcow2/download/"
    refused = client.get(url, follow=True)  # test:///default has no download
    assert "does not support that action" in refused.content.decode()

    closed = []

    def download(uri: str, pool: str, name: str) -> Iterator[bytes]:
        yield from (b"", b"QFI\xfb", b"rest")
        closed.append(name)

    monkeypatch.setattr(vstorage, "download_volume", download)
    response = client.get(url)
    assert response.status_code == 200
    assert read_all(response.streaming_content) == b"QFI\xfbrest"  # type: ignore[attr-defined]
    assert closed == ["tina.qcow2"]
    assert response["Content-Disposition"] == "attachment; filename*=UTF-8''tina.qcow2"
    assert client_for(operator_user).get(url).status_code == 404
    assert audit_rows(operator_user) == [("volume.download", "denied")]


def test_a_tenants_grant_on_a_vm_shows_no_storage(hypervisor, tenant_user, embedded_host):
    Grant.objects.create(host=embedded_host, domain_uuid="6695eb01-f6a4-8304-79aa-97f2502e193f", user=tenant_user)
    assert client_for(tenant_user).get("/hosts/embedded/pools/").status_code == 404


def test_a_volume_a_tenant_created_on_another_host_counts_against_its_quota(storage, tenant_user, xml_host):
    other: Host = xml_host("other", [])
    OwnedVolume.objects.create(host=other, pool="p", name="far.qcow2", path="/p/far.qcow2", owner=tenant_user,
                               capacity_bytes=5 * GIB)
    response = client_for(tenant_user).post(POOL_PAGE, {"name": "more", "size_gib": "2", "format": "raw"})
    assert "Your volumes take 9 of your 10 GiB; 2 GiB more is too much." in response.content.decode()


def test_the_pool_page_lists_libvirts_volumes_with_their_format(storage, hypervisor: libvirt.virConnect, admin_user):
    hypervisor.storagePoolLookupByName("default-pool").createXML(
        "<volume><name>disk.qcow2</name><capacity unit='MiB'>512</capacity><target><format type='qcow2'/></target>"
        "</volume>", 0)
    page = client_for(admin_user).get(POOL_PAGE).content.decode()
    assert 'data-volume="disk.qcow2"' in page
    assert "<td>qcow2</td><td class=\"size\">512 MiB</td>" in page
