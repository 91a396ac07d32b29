""""Test connection" against the networked lab's real sshd and libvirtd: what a host is, or why not, in words.

The unit tests cover refused ports and TLS certificates with sockets of their own; here the SSH
refusals come from the lab's sshd, as an admin meets them.
"""

from __future__ import annotations

import html
import subprocess
from pathlib import Path

import pytest

import lab
from accounts.models import User
from domains.models import Host
from lab import network as lab_network
from tests.conftest import client_for
from tests.integration.helpers import virsh

pytestmark = pytest.mark.integration


def _test(admin: User, uri: str) -> str:
    Host.objects.update_or_create(name="probe", defaults={"uri": uri})
    response = client_for(admin).post("/hosts/probe/test/", headers={"HX-Request": "true"})
    assert response.status_code == 200
    return html.unescape(response.content.decode())


def test_a_host_over_ssh_says_what_it_is(lab_hosts: list[lab.LabHost], admin_user: User):
    lab1 = lab_hosts[0]
    result = _test(admin_user, lab1.uri)
    vms = len(virsh(lab1, "list", "--all", "--name").split())
    assert "host lab1" in result and "QEMU" in result and "MiB" in result
    assert f"{vms} VM{'s' if vms != 1 else ''}" in result


def test_a_host_key_that_is_not_the_pinned_one_is_told(lab_hosts: list[lab.LabHost], admin_user: User):
    pinned = lab_network.KNOWN_HOSTS.read_text()
    lab1_line, lab2_line = pinned.splitlines()[:2]
    lab_network.KNOWN_HOSTS.write_text(f"{lab1_line.split()[0]} {lab2_line.split(maxsplit=1)[1]}\n")
    try:
        result = _test(admin_user, lab_hosts[0].uri)
    finally:
        lab_network.KNOWN_HOSTS.write_text(pinned)
    assert "SSH refused the host's key: it is not the one pinned in known_hosts." in result


def test_a_key_the_host_does_not_let_in_is_told(lab_hosts: list[lab.LabHost], admin_user: User, tmp_path: Path):
    stranger = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True, timeout=30)
    uri = lab_hosts[0].uri.replace(str(lab_network.CLIENT_KEY), str(stranger))
    assert str(stranger) in uri
    assert "SSH refused the login: the key was not accepted." in _test(admin_user, uri)
