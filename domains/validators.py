"""Which libvirt URIs a host may be registered with."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

REMOTE_SCHEMES = {"qemu+ssh", "qemu+tcp", "qemu+tls", "qemu+libssh", "qemu+libssh2"}
LOCAL_SCHEMES = {"qemu", "qemu+unix"}


def validate_libvirt_uri(uri: str) -> None:
    parts = urlsplit(uri)
    if parts.scheme == "test":
        if parts.netloc or not (parts.path == "/default" or parts.path.endswith(".xml")):
            raise ValidationError(
                _("A test URI is test:///default or test:///absolute/path/to/file.xml.")
            )
        return
    if parts.scheme not in LOCAL_SCHEMES | REMOTE_SCHEMES:
        raise ValidationError(
            _("Use a libvirt URI such as qemu:///system, qemu+ssh://user@host/system or test:///default.")
        )
    if parts.path not in ("/system", "/session"):
        raise ValidationError(_("A QEMU URI ends in /system or /session."))
    if parts.scheme in REMOTE_SCHEMES and not parts.hostname:
        raise ValidationError(_("A remote URI names its host, as in qemu+ssh://root@host/system."))
    if parts.password:
        raise ValidationError(_("Do not put a password in the URI; use SSH keys or TLS certificates."))


_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_HOST_NAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$", re.IGNORECASE)


def validate_migration_address(address: str) -> None:
    """An IP address or a DNS name: what libvirt puts in tcp://ADDRESS, never a URI or a port."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        if not _HOST_NAME.match(address):
            raise ValidationError(_("Give an IP address or a DNS name, such as 10.0.0.5 or host1.example.org, "
                                    "without a scheme or port.")) from None
        return
    if parsed.is_unspecified or parsed.is_multicast:
        raise ValidationError(_("Give the address of this host itself, not a wildcard or multicast address."))
