"""The console proxy's VeNCrypt client against a small VeNCrypt display made here, with certificates from lab.pki.

The display speaks what QEMU does with vnc_tls and vnc_tls_x509_verify: RFB 3.8 offering only security
type 19, VeNCrypt 0.2, the x509 subtypes, a TLS session that demands a client certificate from its CA.
"""

from __future__ import annotations

import socket
import ssl
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from cryptography import x509

from consoles import rfb
from domains.virt import GraphicsEndpoint, TlsMaterial
from lab import pki

CHALLENGE = bytes(range(16))
X509_PLAIN, TLS_NONE, TLS_VNC = 262, 257, 258


@dataclass(frozen=True)
class Authority:
    client: TlsMaterial  # the dashboard's files, as pkipath= names them
    host: Path  # a host's certificate, key and CA


@pytest.fixture(scope="module")
def authorities(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Authority]]:
    """The lab's CA and another one, each with a client certificate and a host certificate for 127.0.0.1."""
    made = {}
    for name in ("lab", "other"):
        directory = tmp_path_factory.mktemp(name)
        pki.ensure_authority(directory)
        pki.ensure_host_certificate(directory, directory / "host", name="lab2", address=IPv4Address("127.0.0.1"))
        client = directory / "client"
        made[name] = Authority(
            client=TlsMaterial(
                str(client / "cacert.pem"), str(client / "clientcert.pem"), str(client / "clientkey.pem"), "127.0.0.1"
            ),
            host=directory / "host",
        )
    yield made


def server_context(serving: Authority, *, trusting: Authority) -> ssl.SSLContext:
    """QEMU's tls-creds-x509 with verify-peer, from the files it reads (a lab host's qemu/ names): the host
    certificate of one authority, clients' certificates accepted from the other's CA."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    qemu = pki.qemu_credentials(serving.host)
    context.load_cert_chain(qemu / "server-cert.pem", qemu / "server-key.pem")
    context.load_verify_locations(pki.qemu_credentials(trusting.host) / "ca-cert.pem")
    context.verify_mode = ssl.CERT_REQUIRED
    return context


@dataclass
class Display:
    """A VeNCrypt display on one end of a socket pair, serving one client in a thread."""

    subtypes: tuple[int, ...]
    context: ssl.SSLContext
    chosen: int | None = None
    response: bytes = b""
    client_subject: str = ""
    received: bytes = b""
    errors: list[BaseException] = field(default_factory=list)

    def start(self) -> socket.socket:
        client, server = socket.socketpair()
        client.settimeout(5)
        server.settimeout(5)
        threading.Thread(target=self._serve, args=(server,), daemon=True).start()
        return client

    def _serve(self, sock: socket.socket) -> None:
        try:
            sock.sendall(b"RFB 003.008\n")
            assert _read(sock, 12) == b"RFB 003.008\n"
            sock.sendall(bytes([1, rfb.VENCRYPT]))
            assert _read(sock, 1) == bytes([rfb.VENCRYPT])
            sock.sendall(bytes([0, 2]))
            assert _read(sock, 2) == bytes([0, 2])
            sock.sendall(b"\0" + bytes([len(self.subtypes)]) + struct.pack(f">{len(self.subtypes)}I", *self.subtypes))
            self.chosen = struct.unpack(">I", _read(sock, 4))[0]
            sock.sendall(b"\1")
            tls = self.context.wrap_socket(sock, server_side=True)
            certificate = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True) or b"")
            self.client_subject = certificate.subject.rfc4514_string()
            if self.chosen == rfb.X509_VNC:
                tls.sendall(CHALLENGE)
                self.response = _read(tls, 16)
            tls.sendall(struct.pack(">I", 0))
            self.received = _read(tls, 10)  # what the client relays afterwards
            tls.sendall(b"ServerInit")
            tls.unwrap()
        except BaseException as error:  # noqa: BLE001 - the test reads what went wrong on the display's side
            self.errors.append(error)
        finally:
            sock.close()


def _read(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count and (chunk := sock.recv(count - len(data))):
        data += chunk
    return data


def endpoint(material: TlsMaterial | None) -> GraphicsEndpoint:
    return GraphicsEndpoint("vnc", "127.0.0.1", 5900, "", has_password=False, tls=material)


def answer(challenge: bytes) -> bytes:
    return bytes(byte ^ 0xFF for byte in challenge)


@pytest.mark.parametrize(
    ("offered", "expected"),
    [
        ((rfb.X509_NONE,), rfb.X509_NONE),  # QEMU's offer without a password
        ((rfb.X509_VNC,), rfb.X509_VNC),  # and with one
        ((X509_PLAIN, TLS_NONE, rfb.X509_VNC, rfb.X509_NONE), rfb.X509_NONE),
        ((TLS_VNC, rfb.X509_VNC), rfb.X509_VNC),  # anonymous TLS would not tell who the display is
    ],
)
def test_the_proxy_chooses_an_x509_subtype_and_relays_through_the_tls_session(
    authorities: dict[str, Authority], offered: tuple[int, ...], expected: int
) -> None:
    lab = authorities["lab"]
    display = Display(offered, server_context(lab, trusting=lab))
    channel = rfb.secure_display(display.start(), endpoint(lab.client), answer)
    assert channel is not None
    assert display.chosen == expected
    # The proxy presented the certificate of the pkipath directory.
    assert display.client_subject.startswith("CN=vmportal dashboard,")
    assert display.response == (answer(CHALLENGE) if expected == rfb.X509_VNC else b"")

    browser_side, display_side = socket.socketpair()
    relay = threading.Thread(target=channel.relay, args=(display_side,), daemon=True)
    relay.start()
    browser_side.settimeout(5)
    browser_side.sendall(b"ClientInit")
    assert _read(browser_side, 10) == b"ServerInit"
    relay.join(5)
    assert not relay.is_alive(), "the relay ends when the display closes its TLS session"
    assert display.received == b"ClientInit"
    assert display.errors == []


def test_a_display_certificate_from_another_ca_is_refused(authorities: dict[str, Authority]) -> None:
    other, lab = authorities["other"], authorities["lab"]
    display = Display((rfb.X509_NONE,), server_context(other, trusting=lab))
    with pytest.raises(rfb.DisplayRefused, match="the display's TLS certificate was refused: .*certificate"):
        rfb.secure_display(display.start(), endpoint(lab.client), answer)


def test_a_display_certificate_for_another_address_is_refused(authorities: dict[str, Authority]) -> None:
    lab = authorities["lab"]
    display = Display((rfb.X509_NONE,), server_context(lab, trusting=lab))
    elsewhere = TlsMaterial(
        lab.client.ca_certificate, lab.client.client_certificate, lab.client.client_key, server_name="192.0.2.7"
    )
    with pytest.raises(rfb.DisplayRefused, match="TLS certificate was refused: IP address mismatch"):
        rfb.secure_display(display.start(), endpoint(elsewhere), answer)


def test_a_display_that_refuses_the_proxys_certificate_says_so(authorities: dict[str, Authority]) -> None:
    lab, other = authorities["lab"], authorities["other"]
    display = Display((rfb.X509_NONE,), server_context(lab, trusting=other))
    with pytest.raises(rfb.DisplayRefused, match="TLS session|TLS handshake") as refused:
        rfb.secure_display(display.start(), endpoint(lab.client), answer)
    assert "UNKNOWN_CA" in str(refused.value).upper(), refused.value


def test_a_display_offering_no_x509_subtype_is_refused(authorities: dict[str, Authority]) -> None:
    lab = authorities["lab"]
    display = Display((X509_PLAIN, TLS_NONE, TLS_VNC), server_context(lab, trusting=lab))
    with pytest.raises(rfb.DisplayRefused, match=r"no VeNCrypt subtype with x509 certificates among \[262, 257, 258\]"):
        rfb.secure_display(display.start(), endpoint(lab.client), answer)


def test_a_display_demanding_tls_of_a_host_without_tls_material_is_refused(authorities: dict[str, Authority]) -> None:
    lab = authorities["lab"]
    display = Display((rfb.X509_NONE,), server_context(lab, trusting=lab))
    with pytest.raises(rfb.DisplayRefused, match="demands TLS"):
        rfb.secure_display(display.start(), endpoint(None), answer)


def test_missing_client_files_are_named_as_such(authorities: dict[str, Authority], tmp_path: Path) -> None:
    lab = authorities["lab"]
    display = Display((rfb.X509_NONE,), server_context(lab, trusting=lab))
    missing = TlsMaterial(
        lab.client.ca_certificate, str(tmp_path / "clientcert.pem"), str(tmp_path / "k.pem"), "127.0.0.1"
    )
    with pytest.raises(rfb.DisplayRefused, match="could not load the host's TLS client certificate"):
        rfb.secure_display(display.start(), endpoint(missing), answer)
