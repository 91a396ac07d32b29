"""The SSH login a libvirt URI uses, as a route to the host's own loopback: parsed here, run elsewhere.

A display that listens on a remote host's loopback or unix socket is reached through the host's SSH
transport, as the same user with the same key and ssh command as its libvirt URI
(https://libvirt.org/uri.html#ssh-transport). This module only reads the URI: no I/O, no libvirt,
so the console proxy never parses URIs itself.
"""

from __future__ import annotations

from dataclasses import dataclass
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
