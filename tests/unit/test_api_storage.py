"""Storage through the API, on test:///default: what a tenant sees, its quota and the grow-only rule in the pages'
words, pool definition and actions, uploads in chunks at their offset and the admins' download (the test
driver has no storage streams: uploads record what they were given, as tests/unit/test_storage_pages.py's)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from accounts.models import User
from audit.models import AuditEntry
from domains.models import OwnedVolume
from domains.virt import storage as vstorage
from tests.support.api import (
    api_test_defaults,  # noqa: F401 - a fixture
    bearer,
)
from tests.support.streaming import read_all
from tests.unit.conftest import GIB, volumes_in
from tests.unit.test_storage_pages import written  # noqa: F401 - a fixture

POOL = "/api/v1/hosts/embedded/pools/default-pool/"

pytestmark = pytest.mark.usefixtures("storage")


def test_a_tenant_sees_its_pools_and_own_volumes_without_host_paths(hypervisor, tenant_user: User,
                                                                    admin_user: User):
    api = bearer(tenant_user)
    assert [pool["name"] for pool in api.get("/api/v1/hosts/embedded/pools/").json()["pools"]] == [
        "default-pool", "images"]
    [volume] = api.get(POOL + "volumes/").json()
    assert volume == {"pool": "default-pool", "name": "tina.qcow2", "path": "", "capacity_bytes": 4 * GIB,
                      "allocation_bytes": volume["allocation_bytes"], "format": volume["format"], "mine": True,
                      "url": POOL + "volumes/tina.qcow2/"}
    assert api.get(POOL + "volumes/otto.qcow2/").status_code == 404  # another tenant's: as if missing
    assert bearer(admin_user).get(POOL + "volumes/otto.qcow2/").json()["path"] == "/default-pool/otto.qcow2"


def test_a_tenant_creates_within_its_quota_and_is_refused_beyond_it_in_the_pages_words(hypervisor,
                                                                                         tenant_user: User):
    api = bearer(tenant_user)
    made = api.post(POOL + "volumes/", {"name": "data.qcow2", "size_gib": "2", "format": "qcow2"},
                    content_type="application/json")
    assert made.status_code == 201, made.content
    assert made["Location"] == POOL + "volumes/data.qcow2/"
    assert OwnedVolume.objects.get(name="data.qcow2").owner == tenant_user
    beyond = api.post(POOL + "volumes/", {"name": "big.qcow2", "size_gib": "5", "format": "raw"},
                      content_type="application/json")
    assert (beyond.status_code, beyond.json()["detail"]) == (
        400, "Your volumes take 6 of your 10 GiB; 5 GiB more is too much.")
    assert "big.qcow2" not in volumes_in(hypervisor)


def test_a_volume_only_grows_and_is_deleted_by_its_owner(hypervisor, tenant_user: User):
    api = bearer(tenant_user)
    smaller = api.patch(POOL + "volumes/tina.qcow2/", {"size_gib": "3"}, content_type="application/json")
    assert smaller.status_code == 400
    assert smaller.json()["errors"] == {"size_gib": ["tina.qcow2 has 4 GiB; volumes only grow, so give a larger size."]}
    assert api.delete(POOL + "volumes/otto.qcow2/").status_code == 404
    gone = api.delete(POOL + "volumes/tina.qcow2/")
    assert gone.json()["detail"] == "Volume tina.qcow2 deleted."
    assert "tina.qcow2" not in volumes_in(hypervisor) and "otto.qcow2" in volumes_in(hypervisor)
    assert list(AuditEntry.objects.filter(actor=tenant_user).exclude(action="token.create").order_by("pk")
                .values_list("action", "result", "token_name")) == [
        ("volume.resize", "failed", "tests"), ("volume.delete", "denied", "tests"),
        ("volume.delete", "succeeded", "tests")]


def test_an_admin_defines_a_pool_and_an_operator_stops_it_while_a_tenant_may_not(hypervisor, admin_user: User,
                                                                                  operator_user: User,
                                                                                  tenant_user: User):
    admin, operator = bearer(admin_user), bearer(operator_user)
    made = admin.post("/api/v1/hosts/embedded/pools/", {"name": "scratch", "path": "/scratch"},
                      content_type="application/json")
    assert made.status_code == 201, made.content
    assert made.json()["active"] and made.json()["autostart"]
    clash = admin.post("/api/v1/hosts/embedded/pools/", {"name": "scratch", "path": "/elsewhere"},
                       content_type="application/json")
    assert clash.json()["errors"] == {"name": ["embedded already has a pool named scratch."]}
    assert bearer(tenant_user).post(made["Location"] + "actions/stop/").status_code == 404
    stopped = operator.post(made["Location"] + "actions/stop/")
    assert stopped.json()["detail"] == "Pool scratch stopped."
    assert operator.post(made["Location"] + "actions/explode/").json()["detail"] == (
        "Unknown pool action.")


def test_an_upload_goes_in_chunks_at_its_offset_and_is_its_starters_alone(hypervisor, tenant_user: User,
                                                                          other_tenant_user: User,
                                                                          written):  # noqa: F811 - the fixture
    api = bearer(tenant_user)
    started = api.post(POOL + "uploads/", {"name": "boot.iso", "size_bytes": 10}, content_type="application/json")
    assert started.status_code == 201, started.content
    session = started.json()
    chunk = session["chunk_url"]
    first = api.put(f"{chunk}?offset=0", b"hello", content_type="application/octet-stream")
    assert (first.json()["received"], first.json()["finished"]) == (5, False)
    again = api.put(f"{chunk}?offset=0", b"hello", content_type="application/octet-stream")
    assert (again.status_code, again.json()["detail"]) == (409, "The upload stands at byte 5; send from there.")
    assert api.get(session["url"]).json()["received"] == 5
    assert bearer(other_tenant_user).get(session["url"]).status_code == 404
    last = api.post(f"{chunk}?offset=5", b"world", content_type="application/octet-stream")
    assert last.json()["finished"]
    assert written == [("default-pool/boot.iso", 0, b"hello"), ("default-pool/boot.iso", 5, b"world")]
    done = api.post(session["cancel_url"])
    assert (done.status_code, done.json()["detail"]) == (400, "This upload is complete; delete the volume instead.")


def test_an_upload_beyond_the_quota_is_refused_and_a_cancelled_one_deletes_its_volume(hypervisor,
                                                                                       tenant_user: User):
    api = bearer(tenant_user)
    huge = api.post(POOL + "uploads/", {"name": "huge.iso", "size_bytes": 7 * GIB}, content_type="application/json")
    assert (huge.status_code, huge.json()["detail"]) == (
        400, "Your volumes take 4 of your 10 GiB; 7 GiB more is too much.")
    session = api.post(POOL + "uploads/", {"name": "boot.iso", "size_bytes": 10},
                       content_type="application/json").json()
    cancelled = api.post(session["cancel_url"])
    assert cancelled.json()["detail"] == "Upload of boot.iso cancelled; its partial volume was deleted."
    assert "boot.iso" not in volumes_in(hypervisor) and "huge.iso" not in volumes_in(hypervisor)


def test_an_admin_downloads_a_volume_streamed_from_libvirt(admin_user: User, operator_user: User, monkeypatch):
    url = POOL + "volumes/tina.qcow2/download/"
    admin = bearer(admin_user)
    refused = admin.get(url)
    assert refused.status_code == 502 and "does not support that action" in refused.json()["detail"]

    def download(uri: str, pool: str, name: str) -> Iterator[bytes]:
        yield from (b"", b"QFI\xfb", b"rest")

    monkeypatch.setattr(vstorage, "download_volume", download)
    response = admin.get(url)
    assert response.status_code == 200
    assert read_all(response.streaming_content) == b"QFI\xfbrest"  # type: ignore[attr-defined]
    assert response["Content-Disposition"] == "attachment; filename*=UTF-8''tina.qcow2"
    assert bearer(operator_user).get(url).status_code == 404
