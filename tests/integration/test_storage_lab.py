"""An ISO uploaded through the dashboard's chunk endpoints into a pool of a remote lab host (over SSH, so
through libvirt's storage streams), read back the same way, then booted: the guest's agent answers with the
host name only the ISO's boot menu gives it. On the way, a volume grows on the host."""

from __future__ import annotations

import pytest

import lab
from accounts.models import User
from domains import services
from domains.models import Host
from lab.iso import ISO_HOSTNAME, ensure_install_iso
from tests.conftest import client_for
from tests.integration.helpers import agent, agent_answers, virsh, wait_until
from tests.integration.test_lifecycle_lab import LAB_POOL, define_form, record, remove_leftovers
from tests.support.streaming import read_all

pytestmark = pytest.mark.integration

ISO_VOLUME = "it-install.iso"
CHUNK = 8 * 1024 * 1024  # as static/vmportal/upload.js sends them
POOL_PAGE = f"/hosts/lab1/pools/{LAB_POOL}/"


@pytest.fixture
def remote_lab1(lab_hosts: list[lab.LabHost], db: None) -> tuple[lab.LabHost, Host]:
    """lab1 as the dashboard reaches it: over SSH."""
    remove_leftovers(lab_hosts[0])
    assert lab_hosts[0].uri.startswith("qemu+ssh://"), "the lab network is off: lab1 would not be remote"
    return lab_hosts[0], Host.objects.create(name=lab_hosts[0].name, uri=lab_hosts[0].uri)


def test_an_iso_uploaded_in_chunks_boots_a_guest(remote_lab1: tuple[lab.LabHost, Host], admin_user: User):
    lab_host, _host = remote_lab1
    iso = ensure_install_iso().read_bytes()
    client = client_for(admin_user)
    started = client.post(POOL_PAGE + "uploads/", {"name": ISO_VOLUME, "size_bytes": str(len(iso))})
    assert started.status_code == 201, started.content
    session = started.json()
    offset, sent_twice = 0, False
    while offset < len(iso):
        answer = client.post(f"{session['chunk_url']}?offset={offset}", iso[offset:offset + CHUNK],
                             content_type="application/octet-stream")
        if offset and not sent_twice:  # as after a lost answer: the upload says where it stands
            sent_twice = True
            again = client.post(f"{session['chunk_url']}?offset={offset}", iso[offset:offset + CHUNK],
                                content_type="application/octet-stream")
            assert again.status_code == 409 and again.json()["received"] == answer.json()["received"]
        assert answer.status_code == 200, answer.content
        offset = answer.json()["received"]
    assert answer.json()["finished"] and sent_twice

    page = client.get(POOL_PAGE).content.decode()
    assert f'data-volume="{ISO_VOLUME}"' in page
    downloaded = client.get(f"{POOL_PAGE}volumes/{ISO_VOLUME}/download/")
    assert downloaded.status_code == 200
    assert read_all(downloaded.streaming_content) == iso  # type: ignore[attr-defined]

    # A volume made on the pool page grows on the host (test:///default cannot resize).
    assert client.post(POOL_PAGE, {"name": "it-grow.img", "size_gib": "0.01", "format": "raw"}).status_code == 302
    grown = client.post(f"{POOL_PAGE}volumes/it-grow.img/", {"size_gib": "0.02"}, follow=True).content.decode()
    assert "it-grow.img now has 0.02 GiB." in grown
    assert f"{int(0.02 * 1024**3)} bytes" in virsh(lab_host, "vol-info", "--pool", LAB_POOL, "it-grow.img", "--bytes")
    client.post(f"{POOL_PAGE}volumes/it-grow.img/delete/")

    form = define_form("it-iso", boot_kind="iso", volume=f"{LAB_POOL}/{ISO_VOLUME}", kernel="", initrd="",
                       cmdline="")
    assert client.post("/domains/new/", form).status_code == 302
    uuid = record(admin_user, "it-iso").uuid
    try:
        client.post(f"/domains/lab1/{uuid}/action/", {"action": "start"})
        wait_until(lambda: agent_answers(lab_host, "it-iso"), timeout=180, what="the guest booted from the ISO")
        assert agent(lab_host, "it-iso", "guest-get-host-name")["host-name"] == ISO_HOSTNAME
    finally:
        services.domain_delete(actor=admin_user, host_name="lab1", uuid=uuid)
    deleted = client.post(f"{POOL_PAGE}volumes/{ISO_VOLUME}/delete/", follow=True).content.decode()
    assert f"Volume {ISO_VOLUME} deleted." in deleted and f'data-volume="{ISO_VOLUME}"' not in deleted
