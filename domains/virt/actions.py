"""Lifecycle actions on one domain, and which of them its current state allows."""

from __future__ import annotations

import xml.etree.ElementTree as ET  # noqa: S405 - libvirt's own XML
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING

import libvirt
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext_lazy

from .connections import connection
from .errors import OperationInvalid
from .inventory import DomainRecord
from .states import DomainState
from .storage import VolumeInfo, delete_volumes

if TYPE_CHECKING:
    from django_stubs_ext import StrPromise


class Action(StrEnum):
    START = "start"
    RESTORE = "restore"
    SHUTDOWN = "shutdown"
    REBOOT = "reboot"
    RESET = "reset"
    FORCE_OFF = "force-off"
    PAUSE = "pause"
    RESUME = "resume"
    SAVE = "save"
    DISCARD_SAVE = "discard-save"
    WAKEUP = "wakeup"
    AUTOSTART_ON = "autostart-on"
    AUTOSTART_OFF = "autostart-off"

    @property
    def label(self) -> StrPromise:
        """The button's words, in the reader's language."""
        return _LABELS[self]

    def done_message(self, name: str) -> StrPromise:
        """What the user is told once the action on the machine called `name` is done."""
        return format_lazy(_DONE[self], name=name)


_LABELS = {
    Action.START: _("Start"), Action.RESTORE: _("Restore"), Action.SHUTDOWN: _("Shut down"),
    Action.REBOOT: _("Reboot"), Action.RESET: _("Reset"), Action.FORCE_OFF: _("Force off"),
    Action.PAUSE: _("Pause"), Action.RESUME: _("Resume"), Action.SAVE: _("Save"),
    Action.DISCARD_SAVE: _("Discard saved state"), Action.WAKEUP: _("Wake up"),
    Action.AUTOSTART_ON: _("Autostart on"), Action.AUTOSTART_OFF: _("Autostart off"),
}
# Whole sentences, not a name and a participle: another language puts the name elsewhere.
_DONE = {
    Action.START: _("{name} started."), Action.RESTORE: _("{name} restored."),
    Action.SHUTDOWN: _("{name} asked to shut down."), Action.REBOOT: _("{name} asked to reboot."),
    Action.RESET: _("{name} reset."), Action.FORCE_OFF: _("{name} forced off."), Action.PAUSE: _("{name} paused."),
    Action.RESUME: _("{name} resumed."), Action.SAVE: _("{name} saved."),
    Action.DISCARD_SAVE: _("{name} discarded its saved state."), Action.WAKEUP: _("{name} woken up."),
    Action.AUTOSTART_ON: _("{name} set to start with its host."),
    Action.AUTOSTART_OFF: _("{name} no longer starts with its host."),
}


class PowerMode(StrEnum):
    """How a shutdown or reboot reaches the guest."""

    AUTO = "auto"  # libvirt's choice: QEMU asks the agent when it is connected, otherwise ACPI
    ACPI = "acpi"
    AGENT = "agent"


_RUNNING_ACTIONS = (Action.SHUTDOWN, Action.REBOOT, Action.RESET, Action.PAUSE, Action.SAVE, Action.FORCE_OFF)
_BY_STATE: dict[DomainState, tuple[Action, ...]] = {
    DomainState.RUNNING: _RUNNING_ACTIONS,
    DomainState.BLOCKED: _RUNNING_ACTIONS,
    DomainState.PAUSED: (Action.RESUME, Action.SAVE, Action.FORCE_OFF),
    DomainState.SHUTDOWN: (Action.FORCE_OFF,),
    DomainState.PMSUSPENDED: (Action.WAKEUP, Action.FORCE_OFF),
    DomainState.SHUTOFF: (Action.START,),
    DomainState.CRASHED: (Action.START, Action.FORCE_OFF),
    DomainState.NOSTATE: (),
}
_NEEDS_PERSISTENCE = {Action.SAVE, Action.RESTORE, Action.DISCARD_SAVE, Action.AUTOSTART_ON, Action.AUTOSTART_OFF}


def available_actions(record: DomainRecord) -> tuple[Action, ...]:
    """The actions libvirt accepts in the domain's current state, in menu order."""
    actions = list(_BY_STATE[record.state])
    if record.managed_save and Action.START in actions:
        actions[actions.index(Action.START)] = Action.RESTORE
        actions.append(Action.DISCARD_SAVE)
    if record.persistent:
        actions.append(Action.AUTOSTART_OFF if record.autostart else Action.AUTOSTART_ON)
    else:
        actions = [action for action in actions if action not in _NEEDS_PERSISTENCE]
    return tuple(actions)


def _power_flags(mode: PowerMode, acpi: int, agent: int) -> int:
    return {PowerMode.AUTO: 0, PowerMode.ACPI: acpi, PowerMode.AGENT: agent}[mode]


def _autostart(enabled: bool) -> Callable[[libvirt.virDomain], object]:
    return lambda dom: dom.setAutostart(1 if enabled else 0)


_CALLS: dict[Action, Callable[[libvirt.virDomain], object]] = {
    # virDomainCreate resumes from a managed save image when there is one, else boots.
    Action.START: lambda dom: dom.create(),
    Action.RESTORE: lambda dom: dom.create(),
    Action.RESET: lambda dom: dom.reset(0),
    Action.FORCE_OFF: lambda dom: dom.destroy(),
    Action.PAUSE: lambda dom: dom.suspend(),
    Action.RESUME: lambda dom: dom.resume(),
    Action.SAVE: lambda dom: dom.managedSave(0),
    Action.DISCARD_SAVE: lambda dom: dom.managedSaveRemove(0),
    Action.WAKEUP: lambda dom: dom.pMWakeup(0),
    Action.AUTOSTART_ON: _autostart(True),
    Action.AUTOSTART_OFF: _autostart(False),
}


def run_action(uri: str, uuid: str, action: Action, mode: PowerMode = PowerMode.AUTO) -> None:
    with connection(uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        if action is Action.SHUTDOWN:
            dom.shutdownFlags(_power_flags(mode, libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN,
                                           libvirt.VIR_DOMAIN_SHUTDOWN_GUEST_AGENT))
        elif action is Action.REBOOT:
            dom.reboot(_power_flags(mode, libvirt.VIR_DOMAIN_REBOOT_ACPI_POWER_BTN,
                                    libvirt.VIR_DOMAIN_REBOOT_GUEST_AGENT))
        else:
            _CALLS[action](dom)


def _undefine_flags(dom: libvirt.virDomain, managed_save: bool, snapshot_metadata: bool, nvram: bool) -> int:
    """Only the flags that apply to this domain: drivers refuse flags for things they lack."""
    flags = 0
    if managed_save:
        flags |= libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
    if snapshot_metadata:
        flags |= libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
        if _has_checkpoints(dom):
            flags |= libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA
    if ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)).find("./os/nvram") is not None:  # noqa: S314
        # QEMU refuses to undefine a UEFI domain unless told what to do with its NVRAM.
        flags |= libvirt.VIR_DOMAIN_UNDEFINE_NVRAM if nvram else libvirt.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM
    return flags


def _has_checkpoints(dom: libvirt.virDomain) -> bool:
    try:
        return bool(dom.listAllCheckpoints(0))
    except libvirt.libvirtError as error:
        if error.get_error_code() == libvirt.VIR_ERR_NO_SUPPORT:
            return False
        raise


def delete_domain(
    uri: str,
    uuid: str,
    *,
    remove_managed_save: bool,
    remove_snapshot_metadata: bool,
    remove_nvram: bool,
    volumes: Sequence[VolumeInfo] = (),
) -> list[str]:
    """Undefines the domain with the chosen extras, stops it if it runs, deletes the chosen volumes.

    Undefining first, as virsh allows, leaves a running guest untouched when libvirt refuses to
    undefine; once undefined it is transient, and stopping it removes it.
    `volumes` come from `domain_disks`, read before: once undefined, a stopped domain's XML is gone.
    Returns the keys of the volumes deleted; one already gone is skipped.
    """
    with connection(uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        snapshots = dom.snapshotNum(0)
        if snapshots and not remove_snapshot_metadata:
            # libvirt refuses this for a stopped VM only; a running one would lose the metadata when stopped.
            raise OperationInvalid(format_lazy(ngettext_lazy(
                "{name} has {count} snapshot: delete them first, or let their metadata go with the machine.",
                "{name} has {count} snapshots: delete them first, or let their metadata go with the machine.",
                snapshots), name=dom.name(), count=snapshots))
        active = dom.isActive()  # asked first: a stopped VM is gone once undefined
        if dom.isPersistent():
            dom.undefineFlags(_undefine_flags(dom, remove_managed_save, remove_snapshot_metadata, remove_nvram))
        if active:
            try:
                dom.destroy()
            except libvirt.libvirtError as error:  # it stopped meanwhile, and went with its definition
                if error.get_error_code() not in (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_OPERATION_INVALID):
                    raise
        return delete_volumes(conn, list(volumes))
