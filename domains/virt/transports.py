"""What a libvirt URI says about reaching its host's displays: pure parsing, no I/O, no libvirt.

A display that listens on a remote host's loopback or unix socket is reached through the host's SSH
transport, as the same user with the same key and ssh command as its libvirt URI
(https://libvirt.org/uri.html#ssh-transport). A `qemu+tls://` host's displays may demand VNC over
TLS (VeNCrypt x509); the proxy then presents the client certificate libvirt itself uses for that
host, and trusts only libvirt's CA for it. The console proxy never parses URIs itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import parse_qs, urlsplit

# libvirt's transports over SSH: `command` names the client of the first, `known_hosts` is the libssh ones'.
_OPENSSH, _LIBSSH = "ssh", ("libssh", "libssh2")
_SSH_TRANSPORTS = (_OPENSSH, *_LIBSSH)


@dataclass(frozen=True, slots=True)
class SshRoute:
    """Who logs in where, and how: what one shared SSH connection to a host is made of."""

    host: str
    user: str = ""  # "": ssh's own choice (its configuration, or the local user name)
    port: int | None = None  # None: ssh's own choice
    keyfile: str = ""
    known_hosts: str = ""  # "": OpenSSH's own; named by the libssh transports' URIs only
    command: str = "ssh"  # the OpenSSH client, or a wrapper that runs it

    @property
    def key(self) -> str:
        """Every part of the route: two routes with the same key share one SSH connection."""
        login = f"{self.user}@{self.host}" if self.user else self.host
        options = [
            f"{name}={value}"
            for name, value in (("command", self.command), ("keyfile", self.keyfile), ("known_hosts", self.known_hosts))
            if value
        ]
        return " ".join([f"ssh {login}:{self.port or 22}", *options])

    def command_line(self, *options: str) -> list[str]:
        """The route's ssh command with `options`; BatchMode, for there is no one to ask for a password."""
        args = [self.command, "-o", "BatchMode=yes"]
        if self.user:
            args += ["-l", self.user]
        if self.port:
            args += ["-p", str(self.port)]
        if self.keyfile:
            args += ["-i", self.keyfile]
        if self.known_hosts:
            args += ["-o", f"UserKnownHostsFile={self.known_hosts}"]
        return [*args, *options, "--", self.host]


def ssh_route(uri: str) -> SshRoute | None:
    """The SSH login of a qemu+ssh (or +libssh, +libssh2) URI; None for every other transport."""
    parts = urlsplit(uri)
    transport = parts.scheme.partition("+")[2]
    if transport not in _SSH_TRANSPORTS or not parts.hostname:
        return None
    query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
    return SshRoute(
        host=parts.hostname,
        user=parts.username or "",
        port=parts.port,
        keyfile=query.get("keyfile", ""),
        # libvirt's ssh transport hands known_hosts to no one, and the libssh ones run no command.
        known_hosts=query.get("known_hosts", "") if transport in _LIBSSH else "",
        command=query.get("command", "ssh") if transport == _OPENSSH else "ssh",
    )

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
