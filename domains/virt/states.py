"""libvirt's domain states and their reasons, by the names virsh uses."""

from __future__ import annotations

from enum import IntEnum
from typing import TYPE_CHECKING

from django.utils.translation import gettext_lazy as _

if TYPE_CHECKING:
    from django_stubs_ext import StrPromise


class DomainState(IntEnum):
    """virDomainState; the values are libvirt's own numbers."""

    NOSTATE = 0
    RUNNING = 1
    BLOCKED = 2
    PAUSED = 3
    SHUTDOWN = 4
    SHUTOFF = 5
    CRASHED = 6
    PMSUSPENDED = 7

    @property
    def label(self) -> str:
        """virsh's name for the state, in English: the machine value (data-state, JSON, sorting, CSS)."""
        return _STATE_LABELS[self]

    @property
    def display(self) -> StrPromise:
        """The state in the reader's language: the words a person reads."""
        return _STATE_DISPLAY[self]


_STATE_LABELS = {
    DomainState.NOSTATE: "no state",
    DomainState.RUNNING: "running",
    DomainState.BLOCKED: "idle",
    DomainState.PAUSED: "paused",
    DomainState.SHUTDOWN: "in shutdown",
    DomainState.SHUTOFF: "shut off",
    DomainState.CRASHED: "crashed",
    DomainState.PMSUSPENDED: "pmsuspended",
}

_STATE_DISPLAY = {
    DomainState.NOSTATE: _("no state"),
    DomainState.RUNNING: _("running"),
    DomainState.BLOCKED: _("idle"),
    DomainState.PAUSED: _("paused"),
    DomainState.SHUTDOWN: _("in shutdown"),
    DomainState.SHUTOFF: _("shut off"),
    DomainState.CRASHED: _("crashed"),
    DomainState.PMSUSPENDED: _("suspended to memory"),
}
SAVED_DISPLAY = _("saved")  # a shut-off VM with a managed save image (DomainRecord.state_label)

# Indexed by libvirt's per-state reason enums (virDomainRunningReason, ...), worded as virsh does.
_REASONS: dict[DomainState, tuple[str, ...]] = {
    DomainState.NOSTATE: ("unknown",),
    DomainState.RUNNING: (
        "unknown", "booted", "migrated", "restored", "from snapshot", "unpaused",
        "migration canceled", "save canceled", "event wakeup", "crashed", "post-copy",
        "post-copy failed",
    ),
    DomainState.BLOCKED: ("unknown",),
    DomainState.PAUSED: (
        "unknown", "user", "migrating", "saving", "dumping", "I/O error", "watchdog",
        "from snapshot", "shutting down", "creating snapshot", "crashed", "starting up",
        "post-copy", "post-copy failed", "api error",
    ),
    DomainState.SHUTDOWN: ("unknown", "user"),
    DomainState.SHUTOFF: (
        "unknown", "shutdown", "destroyed", "crashed", "migrated", "saved", "failed",
        "from snapshot", "daemon",
    ),
    DomainState.CRASHED: ("unknown", "panicked"),
    DomainState.PMSUSPENDED: ("unknown",),
}


def reason_label(state: DomainState, reason: int) -> str:
    reasons = _REASONS[state]
    return reasons[reason] if 0 <= reason < len(reasons) else "unknown"


def state_from_number(number: int) -> DomainState:
    try:
        return DomainState(number)
    except ValueError:
        return DomainState.NOSTATE
