"""Displays on a remote host's loopback or unix socket: the SSH route read from the host's URI and the
endpoint a ticket is bound to."""

from __future__ import annotations

import pytest

from domains.virt.graphics import ConsoleUnavailable, GraphicsEndpoint, parse_graphics
from domains.virt.transports import SshRoute, ssh_route

LAB_URI = (
    "qemu+ssh://root@10.213.0.11/system?command=/var/lib/vmportal-lab/network/ssh"
    "&keyfile=/var/lib/vmportal-lab/network/id_ed25519&no_tty=1"
)


def _xml(listen: str, kind: str = "vnc", port: int = 5901) -> str:
    return (
        f"<domain><devices><graphics type='{kind}' port='{port}' autoport='yes'>{listen}</graphics></devices></domain>"
    )


LOOPBACK = "<listen type='address' address='127.0.0.1'/>"
SOCKET = "<listen type='socket' socket='/var/lib/libvirt/qemu/domain-3-vm/vnc.sock'/>"


def test_the_route_is_the_uris_login() -> None:
    assert ssh_route(LAB_URI) == SshRoute(
        host="10.213.0.11",
        user="root",
        keyfile="/var/lib/vmportal-lab/network/id_ed25519",
        command="/var/lib/vmportal-lab/network/ssh",
    )
    assert ssh_route("qemu+ssh://admin@kvm1.example.org:2222/system") == SshRoute(
        host="kvm1.example.org", user="admin", port=2222
    )
    # No user, port, key or command in the URI: ssh's own choices.
    assert ssh_route("qemu+ssh://kvm1.example.org/system") == SshRoute(host="kvm1.example.org")


def test_each_ssh_transport_keeps_only_its_own_parameters() -> None:
    # libvirt hands known_hosts only to the libssh transports, and runs a command only for ssh.
    query = "?known_hosts=/etc/vmportal/known_hosts&command=/usr/local/bin/ssh-wrapper"
    assert ssh_route("qemu+ssh://kvm1/system" + query) == SshRoute(host="kvm1", command="/usr/local/bin/ssh-wrapper")
    for transport in ("libssh", "libssh2"):
        assert ssh_route(f"qemu+{transport}://kvm1/system" + query) == SshRoute(
            host="kvm1", known_hosts="/etc/vmportal/known_hosts"
        )


@pytest.mark.parametrize(
    "uri",
    [
        "qemu+tls://kvm1/system",
        "qemu+tcp://kvm1/system",
        "qemu:///system",
        "qemu+unix:///system?socket=/run/libvirt/libvirt-sock",
        "test:///default",
        "qemu+ssh:///system",
    ],
)
def test_no_route_without_an_ssh_transport_to_a_named_host(uri: str) -> None:
    assert ssh_route(uri) is None


def test_a_different_route_is_a_different_endpoint() -> None:
    route = ssh_route(LAB_URI)
    assert route is not None
    direct = GraphicsEndpoint("vnc", "127.0.0.1", 5901, "", False, run_id=3)
    keys = {direct.key} | {
        GraphicsEndpoint("vnc", "127.0.0.1", 5901, "", False, run_id=3, ssh=other).key
        for other in (
            route,
            SshRoute(host=route.host, user=route.user, command=route.command),
            SshRoute(host=route.host, user="admin", keyfile=route.keyfile, command=route.command),
            SshRoute(host=route.host, user=route.user, port=2222, keyfile=route.keyfile, command=route.command),
        )
    }
    assert len(keys) == 5
    assert "via ssh root@10.213.0.11:22" in GraphicsEndpoint("vnc", "127.0.0.1", 5901, "", False, ssh=route).key


def test_a_loopback_display_of_an_ssh_host_is_reached_through_its_ssh_route() -> None:
    endpoint = parse_graphics(_xml(LOOPBACK), uri=LAB_URI)
    assert (endpoint.address, endpoint.port, endpoint.socket) == ("127.0.0.1", 5901, "")  # as the host sees it
    assert endpoint.ssh == ssh_route(LAB_URI)


def test_a_unix_socket_display_of_an_ssh_host_is_reached_through_its_ssh_route() -> None:
    endpoint = parse_graphics(_xml(SOCKET, kind="spice"), uri=LAB_URI)
    assert (endpoint.kind, endpoint.socket, endpoint.port) == (
        "spice",
        "/var/lib/libvirt/qemu/domain-3-vm/vnc.sock",
        None,
    )
    assert endpoint.ssh == ssh_route(LAB_URI)


def test_local_and_wildcard_displays_need_no_route() -> None:
    assert parse_graphics(_xml(LOOPBACK), uri="qemu:///system").ssh is None
    assert parse_graphics(_xml(SOCKET), uri="qemu:///system").ssh is None
    wildcard = parse_graphics(_xml("<listen type='address' address='0.0.0.0'/>"), uri=LAB_URI)
    assert (wildcard.address, wildcard.ssh) == ("10.213.0.11", None)  # listening everywhere: straight to the host


@pytest.mark.parametrize("listen", [LOOPBACK, SOCKET])
def test_a_loopback_display_of_a_tls_host_is_refused_with_the_reason(listen: str) -> None:
    with pytest.raises(ConsoleUnavailable, match="through the host's SSH transport"):
        parse_graphics(_xml(listen), uri="qemu+tls://kvm1.example.org/system")
