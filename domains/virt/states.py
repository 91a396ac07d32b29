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
        return _(self.label)  # a variable on purpose: every label below is marked


def gettext_noop(word: str) -> str:
    """Marks a word for the catalogue (makemessages knows the name) and returns it as it is. Django's own would
    read the settings when this module is imported, and tools that list domains without Django import it."""
    return word


# virsh's names, English in the record (the machine value), marked so that a page shows them in its reader's
# language (DomainRecord.state_display), as the reasons below are.
_STATE_LABELS = {
    DomainState.NOSTATE: gettext_noop("no state"),
    DomainState.RUNNING: gettext_noop("running"),
    DomainState.BLOCKED: gettext_noop("idle"),
    DomainState.PAUSED: gettext_noop("paused"),
    DomainState.SHUTDOWN: gettext_noop("in shutdown"),
    DomainState.SHUTOFF: gettext_noop("shut off"),
    DomainState.CRASHED: gettext_noop("crashed"),
    DomainState.PMSUSPENDED: gettext_noop("pmsuspended"),  # as virsh says it: the list matches `virsh list`
}
SAVED_LABEL = gettext_noop("saved")  # a shut-off VM with a managed save image (DomainRecord.state_label)

# Indexed by libvirt's per-state reason enums (virDomainRunningReason, ...), worded as virsh does: English in the
# record (the machine value), marked so that a page shows them in its reader's language (DomainRecord.reason_display).
_REASONS: dict[DomainState, tuple[str, ...]] = {
    DomainState.NOSTATE: (gettext_noop("unknown"),),
    DomainState.RUNNING: (
        gettext_noop("unknown"), gettext_noop("booted"), gettext_noop("migrated"), gettext_noop("restored"),
        gettext_noop("from snapshot"), gettext_noop("unpaused"), gettext_noop("migration canceled"),
        gettext_noop("save canceled"), gettext_noop("event wakeup"), gettext_noop("crashed"), gettext_noop("post-copy"),
        gettext_noop("post-copy failed"),
    ),
    DomainState.BLOCKED: (gettext_noop("unknown"),),
    DomainState.PAUSED: (
        gettext_noop("unknown"), gettext_noop("user"), gettext_noop("migrating"), gettext_noop("saving"),
        gettext_noop("dumping"), gettext_noop("I/O error"), gettext_noop("watchdog"), gettext_noop("from snapshot"),
        gettext_noop("shutting down"), gettext_noop("creating snapshot"), gettext_noop("crashed"),
        gettext_noop("starting up"), gettext_noop("post-copy"), gettext_noop("post-copy failed"),
        gettext_noop("api error"),
    ),
    DomainState.SHUTDOWN: (gettext_noop("unknown"), gettext_noop("user")),
    DomainState.SHUTOFF: (
        gettext_noop("unknown"), gettext_noop("shutdown"), gettext_noop("destroyed"), gettext_noop("crashed"),
        gettext_noop("migrated"), gettext_noop("saved"), gettext_noop("failed"), gettext_noop("from snapshot"),
        gettext_noop("daemon"),
    ),
    DomainState.CRASHED: (gettext_noop("unknown"), gettext_noop("panicked")),
    DomainState.PMSUSPENDED: (gettext_noop("unknown"),),
}


def reason_label(state: DomainState, reason: int) -> str:
    reasons = _REASONS[state]
    return reasons[reason] if 0 <= reason < len(reasons) else "unknown"


def state_from_number(number: int) -> DomainState:
    try:
        return DomainState(number)
    except ValueError:
        return DomainState.NOSTATE
