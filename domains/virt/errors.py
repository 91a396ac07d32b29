"""The project's own hypervisor errors: every libvirtError is turned into one of these.

`str(error)` is safe to show any user (no URI, credential or stack trace); `detail` keeps
libvirt's own message for the logs and for admins.
"""

from __future__ import annotations


class VirtError(Exception):
    """A hypervisor operation failed; the message is safe to show a tenant."""

    default_message = "The hypervisor could not complete the request."

    def __init__(self, message: str | None = None, *, detail: str = "") -> None:
        super().__init__(message or self.default_message)
        self.detail = detail


class HostUnreachable(VirtError):
    default_message = "The host cannot be reached right now."


class DomainNotFound(VirtError):
    default_message = "The virtual machine no longer exists on this host."


class SnapshotNotFound(VirtError):
    default_message = "That snapshot no longer exists."


class OperationInvalid(VirtError):
    default_message = "That action is not possible in the machine's current state."


class OperationInProgress(VirtError):
    default_message = "Another action on this machine is already in progress; try again in a moment."


class AgentUnavailable(VirtError):
    default_message = "The guest agent is not connected."


class InvalidDefinition(VirtError):
    default_message = "The hypervisor rejected the machine definition."


class OperationUnsupported(VirtError):
    default_message = "This host's hypervisor does not support that action."
