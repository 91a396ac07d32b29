"""A host's URI -> the TLS material the console proxy presents to its displays (libvirt's own client PKI)."""

from __future__ import annotations

import pytest

from domains.virt import TlsMaterial, tls_material
from domains.virt.graphics import parse_graphics

LAB_CLIENT = "/var/lib/vmportal-lab/network/pki/client"


def test_pkipath_names_the_directory_of_all_three_files() -> None:
    assert tls_material(f"qemu+tls://10.213.0.12/system?pkipath={LAB_CLIENT}") == TlsMaterial(
        ca_certificate=f"{LAB_CLIENT}/cacert.pem",
        client_certificate=f"{LAB_CLIENT}/clientcert.pem",
        client_key=f"{LAB_CLIENT}/clientkey.pem",
        server_name="10.213.0.12",
    )


@pytest.mark.parametrize(
    "uri",
    [
        "qemu+tls://kvm1.example.org/system",
        "qemu://kvm1.example.org/system",
        "qemu+tls://kvm1.example.org:16514/system?no_verify=0",
    ],
)
def test_without_pkipath_libvirts_defaults_and_the_uris_host(uri: str) -> None:
    # A host name and no transport is TLS to libvirt too.
    assert tls_material(uri) == TlsMaterial(
        ca_certificate="/etc/pki/CA/cacert.pem",
        client_certificate="/etc/pki/libvirt/clientcert.pem",
        client_key="/etc/pki/libvirt/private/clientkey.pem",
        server_name="kvm1.example.org",
    )


@pytest.mark.parametrize(
    "uri",
    [
        "qemu:///system",
        "qemu+unix:///system?socket=/run/vmportal-lab/sockets/lab2/libvirt-sock",
        "qemu+ssh://root@10.213.0.11/system?keyfile=/k&pkipath=/ignored",
        "qemu+tcp://kvm1.example.org/system",
        "test:///default",
    ],
)
def test_other_transports_have_none(uri: str) -> None:
    assert tls_material(uri) is None


LIVE_XML = """<domain><devices>
  <graphics type='{kind}' port='6000' autoport='yes' listen='10.213.0.12'>
    <listen type='address' address='10.213.0.12'/>
  </graphics>
</devices></domain>"""


def test_a_vnc_display_of_a_tls_host_carries_its_material_and_listens_on_the_hosts_address() -> None:
    uri = f"qemu+tls://10.213.0.12/system?pkipath={LAB_CLIENT}"
    endpoint = parse_graphics(LIVE_XML.format(kind="vnc"), uri=uri)
    assert (endpoint.address, endpoint.port, endpoint.tls) == ("10.213.0.12", 6000, tls_material(uri))
    assert parse_graphics(LIVE_XML.format(kind="spice"), uri=uri).tls is None  # SPICE stays plain
    assert parse_graphics(LIVE_XML.format(kind="vnc"), uri="qemu+ssh://root@10.213.0.12/system").tls is None
