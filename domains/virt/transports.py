"""What a libvirt URI says about reaching its host's displays: pure parsing, no connection opened.

A `qemu+tls://` host's displays may demand VNC over TLS (VeNCrypt x509); the proxy then presents the
client certificate libvirt itself uses for that host, and trusts only libvirt's CA for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import parse_qs, urlsplit

# libvirt's client defaults when the URI names no pkipath (LIBVIRT_CACERT_DIR, _CERT_DIR, _KEY_DIR). A
# non-root libvirt client prefers ~/.pki/libvirt when it has the files; the proxy follows the URI and
# these alone, so such a site names its directory with pkipath=.
_SYSTEM_CA_CERTIFICATE = PurePosixPath("/etc/pki/CA/cacert.pem")
_SYSTEM_CLIENT_CERTIFICATE = PurePosixPath("/etc/pki/libvirt/clientcert.pem")
_SYSTEM_CLIENT_KEY = PurePosixPath("/etc/pki/libvirt/private/clientkey.pem")


@dataclass(frozen=True, slots=True)
class TlsMaterial:
    """The files a TLS client of a host's displays presents and trusts, and the name its certificate must bear."""

    ca_certificate: str
    client_certificate: str
    client_key: str
    server_name: str  # the URI's host: libvirt checks the host's certificate against the same name


def tls_material(uri: str) -> TlsMaterial | None:
    """libvirt's client PKI for a TLS URI (its pkipath= directory, else libvirt's defaults); None for others.

    libvirt's transport is TLS when the URI says `+tls`, or names a host and no transport at all.
    """
    parts = urlsplit(uri)
    _driver, _plus, transport = parts.scheme.partition("+")
    host = parts.hostname or ""
    if not host or transport not in ("tls", ""):
        return None
    pki_paths = parse_qs(parts.query).get("pkipath")
    if pki_paths:
        directory = PurePosixPath(pki_paths[-1])
        ca, certificate, key = directory / "cacert.pem", directory / "clientcert.pem", directory / "clientkey.pem"
    else:
        ca, certificate, key = _SYSTEM_CA_CERTIFICATE, _SYSTEM_CLIENT_CERTIFICATE, _SYSTEM_CLIENT_KEY
    return TlsMaterial(str(ca), str(certificate), str(key), server_name=host)
