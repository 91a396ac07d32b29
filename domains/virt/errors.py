"""The project's own hypervisor errors: every libvirtError is turned into one of these.

`str(error)` is a summary safe to show any user; `detail` keeps libvirt's own message. A reader
gets `full_message` (the summary and libvirt's words, for admins and the audit row) or
`redacted_message` (the same reason with host paths, URIs, addresses and UUIDs taken out).
Our summaries are lazy translations: read in the reader's language, written to the audit log in the site's.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, ClassVar

from django.utils.translation import gettext_lazy as _

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise, StrPromise


class VirtError(Exception):
    """A hypervisor operation failed; the message is safe to show a tenant."""

    default_message: ClassVar[StrOrPromise] = _("The hypervisor could not complete the request.")
    # Whether libvirt's reason, redacted, helps a tenant: not when it is all about the host itself.
    reason_for_everyone: ClassVar[bool] = True

    def __init__(self, message: StrOrPromise | None = None, *, detail: str = "") -> None:
        super().__init__(message or self.default_message)
        self.detail = detail
        # A message worded from libvirt's own (see connections.translate) already gives the reason.
        self._explains = message is None and self.reason_for_everyone

    @property
    def full_message(self) -> str:
        """The summary and libvirt's message word for word: for admins and the audit row."""
        return f"{self} libvirt: {self.detail}" if self.detail else str(self)

    @property
    def redacted_message(self) -> str:
        """What a reader who may not see host details gets: the same reason without them."""
        return redact(self.full_message) if self._explains else str(self)


class HostUnreachable(VirtError):
    default_message = _("The host cannot be reached right now.")
    reason_for_everyone = False  # addresses, sockets and SSH's words about the host: nothing left to tell

    def __init__(self, message: StrOrPromise | None = None, *, detail: str = "", cause: StrOrPromise = "") -> None:
        super().__init__(message, detail=detail)
        # What stopped the connection, in words (connections.unreachable_cause), for the admin who tests
        # the host; empty when libvirt's message does not tell.
        self.cause = cause


class DomainNotFound(VirtError):
    default_message = _("The virtual machine no longer exists on this host.")
    reason_for_everyone = False


class SnapshotNotFound(VirtError):
    default_message = _("That snapshot no longer exists.")
    reason_for_everyone = False


class NetworkNotFound(VirtError):
    default_message = _("That network no longer exists on this host.")


class StorageNotFound(VirtError):
    default_message = _("That storage pool or volume no longer exists on this host.")
    reason_for_everyone = False


class OperationInvalid(VirtError):
    default_message = _("That action is not possible in the machine's current state.")


class OperationInProgress(VirtError):
    default_message = _("Another action on this machine is already in progress; try again in a moment.")


class AgentUnavailable(VirtError):
    default_message = _("The guest agent is not connected.")


class InvalidDefinition(VirtError):
    default_message = _("The hypervisor rejected the machine definition.")


class NameTaken(InvalidDefinition):
    """A name or address the request chose is already used on the host: the form's `field` says which."""

    def __init__(self, message: StrOrPromise, *, field: str) -> None:
        super().__init__(message)
        self.field = field


# What NameTaken says, where a definition or a clone chose a name the host already has.
NAME_TAKEN = _("A machine named {name} already exists on this host.")
VOLUME_NAME_TAKEN = _("Pool {pool} already has a volume named {name}.")


class OperationUnsupported(VirtError):
    default_message = _("This host's hypervisor does not support that action.")


def summary_for_reader(summary: str) -> StrPromise:
    """A summary that crossed a thread, the cache or the channel layer as text in the site's language (a
    watcher's words about its host), in the reader's language again: ours are in the catalogue, libvirt's own
    words stay as they are."""
    return _(summary)  # a variable on purpose: the words were marked where they were written


# --- Redaction: pure text, so it applies as well to a message stored in an audit row. ---

_QEMU_TIMESTAMP = re.compile(r"\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z\s*")
_URI = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"]*[^\s'\".,:;)]|\b[A-Za-z][A-Za-z0-9+.-]*://")
# An absolute path starts after a space, a quote, "=", "(", "," or the text's start ("Input/output"
# does not), and runs to a space, a quote, a comma or a colon that ends a clause.
_PATH = re.compile(r"(?:^|(?<=[\s'\"=(,\[{]))/(?:[^\s'\",;:()\[\]{}]|:(?![\s]|$))*")
_IPV4 = re.compile(r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?(?![\w.])")
_IPV6 = re.compile(r"\[[0-9A-Fa-f:.]+\](?::\d+)?|(?<![\w:])[0-9A-Fa-f:]*::[0-9A-Fa-f:.]*(?![\w:])")
_HOST_PORT = re.compile(r"(?<![\w.-])[A-Za-z][A-Za-z0-9-]*(?:\.[A-Za-z0-9-]+)*:\d{2,5}(?![\w.])")
_SSH_HOST = re.compile(r"\b(connect to host|resolve hostname|host key for|Host key verification failed for) \S+?"
                       r"(?=:|\s|$)")
_UUID = re.compile(r"\b[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\b")
_QUOTED_MARK = re.compile(r"(['\"`])(\[(?:host path|URI|address|UUID)\])\1")


def redact(text: str) -> str:
    """`text` with host paths, URIs, socket names, addresses and UUIDs replaced by a placeholder.

    Paths name the host's directories and users' files, URIs and addresses how to reach the host
    (and sometimes as whom); a UUID in libvirt's words may be another tenant's machine.
    """
    text = _QEMU_TIMESTAMP.sub("", text)
    text = _URI.sub("[URI]", text)
    text = _PATH.sub("[host path]", text)
    text = _SSH_HOST.sub(r"\1 [address]", text)
    text = _IPV6.sub("[address]", text)
    text = _IPV4.sub("[address]", text)
    text = _HOST_PORT.sub("[address]", text)
    text = _UUID.sub("[UUID]", text)
    return _QUOTED_MARK.sub(r"\2", text)
