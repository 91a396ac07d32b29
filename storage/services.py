"""Writes on storage pools and volumes: the gate (storage.selectors), the audit row, then libvirt.

A tenant creates and uploads volumes only in its allowance's pools and within its GiB quota, and resizes
and deletes only the volumes recorded as its own (domains.models.OwnedVolume, which every volume created
here is, whoever creates it); pools are managed by admins and operators, defined by admins.
"""

from __future__ import annotations

from collections.abc import Generator
from contextlib import nullcontext, suppress
from typing import TYPE_CHECKING

from django.core.exceptions import ValidationError
from django.db.models import F
from django.http import Http404
from django.utils import timezone
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _

from audit.services import audited, refuse
from domains.access import GIB, require_admin
from domains.models import Host, OwnedVolume
from domains.virt import VirtError, VolumeInfo
from domains.virt import storage as vstorage
from domains.virt.errors import VOLUME_NAME_TAKEN, StorageNotFound
from domains.virt.storage import PoolAction, PoolCapacity

from . import selectors
from .models import ABANDONED_AFTER, UploadSession

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

    from accounts.models import User


def pool_define(*, actor: User, host_name: str, name: str, path: str, client_addr: str | None = None) -> PoolCapacity:
    """Defines a directory pool at `path`, builds it, starts it and sets it to start with the host."""
    with audited(actor=actor, action="pool.define", host=selectors.audit_host(host_name), message=f"{name} at {path}",
                 client_addr=client_addr):
        require_admin(actor)
        host, _scope = selectors.storage_host(actor, host_name)
        if name in {pool.name for pool in vstorage.pool_capacities(host.uri)}:
            raise ValidationError({"name": format_lazy(_("{host} already has a pool named {name}."), host=host.name,
                                                       name=name)})
        return vstorage.define_dir_pool(host.uri, name, path)


def pool_act(*, actor: User, host_name: str, pool: str, action: PoolAction,
             client_addr: str | None = None) -> StrOrPromise:
    with audited(actor=actor, action=f"pool.{action}", host=selectors.audit_host(host_name), message=pool,
                 client_addr=client_addr):
        host, scope = selectors.storage_pool(actor, host_name, pool)
        if not scope.unlimited:
            raise Http404(_("No such pool."))  # tenants use pools, they do not run them
        vstorage.act_on_pool(host.uri, pool, action)
    return action.done_message(pool)


def _check_new_volume(actor: User, host_name: str, pool: str, name: str, size_bytes: int) -> Host:
    """The host, when `actor` may put a new volume of `size_bytes` named `name` in `pool`; else a refusal by field."""
    host, scope = selectors.storage_pool(actor, host_name, pool)
    if problems := scope.new_volume_problems(pool, size_bytes):
        raise ValidationError(problems)
    if any(volume.name == name for volume in vstorage.pool_volumes(host.uri, pool)):
        raise ValidationError({"name": format_lazy(VOLUME_NAME_TAKEN, pool=pool, name=name)})
    return host


def _record_owner(host: Host, volume: VolumeInfo, owner: User) -> None:
    # Just created, so any record of the same name is of a volume deleted outside the dashboard.
    OwnedVolume.objects.update_or_create(host=host, pool=volume.pool, name=volume.name, defaults={
        "path": volume.path, "owner": owner, "capacity_bytes": volume.capacity_bytes})


def volume_create(*, actor: User, host_name: str, pool: str, name: str, size_bytes: int, volume_format: str,
                  client_addr: str | None = None) -> VolumeInfo:
    with audited(actor=actor, action="volume.create", host=selectors.audit_host(host_name),
                 message=f"{pool}/{name}, {size_bytes} bytes {volume_format}", client_addr=client_addr):
        host = _check_new_volume(actor, host_name, pool, name, size_bytes)
        volume = vstorage.create_volume(host.uri, pool, name, size_bytes, volume_format)
        _record_owner(host, volume, actor)
    return volume


def _own_volume(actor: User, host_name: str, pool: str, name: str) -> tuple[Host, VolumeInfo]:
    """A volume the actor may change: any for admins and operators, its own for a tenant (a shared image it
    may see, but not change, is a 404 here as well)."""
    host, scope, volume = selectors.storage_volume(actor, host_name, pool, name)
    if not scope.may_change(volume.key):
        raise Http404(_("No such volume."))
    return host, volume


def volume_resize(*, actor: User, host_name: str, pool: str, name: str, size_bytes: int,
                  client_addr: str | None = None) -> StrOrPromise:
    """Grows the volume; a size not above the current one is refused, and the growth counts against the quota."""
    with audited(actor=actor, action="volume.resize", host=selectors.audit_host(host_name),
                 message=f"{pool}/{name} to {size_bytes} bytes", client_addr=client_addr):
        host, volume = _own_volume(actor, host_name, pool, name)
        if size_bytes <= volume.capacity_bytes:
            raise ValidationError({"size_gib": format_lazy(
                _("{name} has {gib} GiB; volumes only grow, so give a larger size."), name=name,
                gib=f"{volume.capacity_bytes / GIB:.3g}")})
        _host, scope = selectors.storage_host(actor, host_name)
        if not scope.unlimited and (problems := scope.new_volume_problems(pool, size_bytes - volume.capacity_bytes)):
            raise ValidationError({"size_gib": problems})
        vstorage.resize_volume(host.uri, pool, name, size_bytes)
        OwnedVolume.objects.filter(host=host, pool=pool, name=name).update(capacity_bytes=size_bytes)
    return format_lazy(_("{name} now has {gib} GiB."), name=name, gib=f"{size_bytes / GIB:.3g}")


def volume_delete(*, actor: User, host_name: str, pool: str, name: str,
                  client_addr: str | None = None) -> StrOrPromise:
    """Deletes a volume no machine uses, and its ownership record."""
    with audited(actor=actor, action="volume.delete", host=selectors.audit_host(host_name), message=f"{pool}/{name}",
                 client_addr=client_addr):
        host, _volume = _own_volume(actor, host_name, pool, name)
        vstorage.delete_volume(host.uri, pool, name)
        OwnedVolume.objects.filter(host=host, pool=pool, name=name).delete()
    return format_lazy(_("Volume {name} deleted."), name=name)


def volume_download(*, actor: User, host_name: str, pool: str, name: str,
                    client_addr: str | None = None) -> tuple[VolumeInfo, Generator[bytes]]:
    """Admins: the volume and its bytes, read through libvirt's storage stream as they are sent."""
    with audited(actor=actor, action="volume.download", host=selectors.audit_host(host_name), message=f"{pool}/{name}",
                 client_addr=client_addr):
        require_admin(actor)
        host, _scope, volume = selectors.storage_volume(actor, host_name, pool, name)
        chunks = vstorage.download_volume(host.uri, pool, name)
        next(chunks)  # libvirt has taken the download, or refused it here
    return volume, chunks


# --- Uploads: a session per file; the browser sends chunks at the offset the session has reached. ---


class ChunkOutOfPlace(Exception):
    """A chunk that does not start where the upload stands (a resent or a lost one): the browser asks again."""

    def __init__(self, session: UploadSession) -> None:
        super().__init__(format_lazy(_("The upload stands at byte {offset}; send from there."),
                                     offset=session.received_bytes))
        self.session = session


class UploadAbandoned(Exception):
    """The upload got no data for too long; its partial volume was deleted."""


def upload_start(*, actor: User, host_name: str, pool: str, name: str, size_bytes: int,
                 client_addr: str | None = None) -> UploadSession:
    """Checks the pool and the quota for the whole file, creates its volume (raw, its size) and the session; the
    actor's unfinished upload of the same name and size is resumed instead (the page was closed, the browser
    restarted): the session says where it stands.

    Abandoned uploads go first, so their partial volumes do not count against the quota."""
    uploads_expire()
    with audited(actor=actor, action="volume.upload", host=selectors.audit_host(host_name),
                 message=f"{pool}/{name}, {size_bytes} bytes", client_addr=client_addr) as entry:
        selectors.storage_pool(actor, host_name, pool)
        unfinished = (UploadSession.objects.filter(host__name=host_name, pool=pool, volume=name, owner=actor,
                                                   total_bytes=size_bytes)
                      .exclude(received_bytes=F("total_bytes")).first())
        if unfinished is not None:
            entry.message = f"{entry.message}: upload {unfinished.pk} resumed at byte {unfinished.received_bytes}"
            return unfinished
        host = _check_new_volume(actor, host_name, pool, name, size_bytes)
        volume = vstorage.create_volume(host.uri, pool, name, size_bytes, "raw")
        _record_owner(host, volume, actor)
        session = UploadSession.objects.create(host=host, pool=pool, volume=name, total_bytes=size_bytes, owner=actor)
        entry.message = f"{entry.message}: upload {session.pk} started"
    return session


def _own_session(actor: User, session_id: int, action: str, client_addr: str | None) -> UploadSession:
    """The actor's own upload; anybody else's is a 404, audited as refused."""
    try:
        return selectors.upload_session_get(user=actor, session_id=session_id)
    except Http404:
        refuse(actor=actor, action=action, client_addr=client_addr)


def upload_chunk(*, actor: User, session_id: int, offset: int, data: bytes,
                 client_addr: str | None = None) -> UploadSession:
    """Writes one chunk into the volume at `offset`, which must be where the upload stands.

    The start and the last chunk bracket the upload in the audit log (a row per chunk would bury it); a chunk
    libvirt refuses is answered with its reason and may be sent again. An abandoned upload is discarded here
    and says so.
    """
    session = _own_session(actor, session_id, "volume.upload-chunk", client_addr)
    if session.abandoned:
        _discard(session, actor=actor, action="volume.upload-expire", client_addr=client_addr)
        raise UploadAbandoned(format_lazy(_("This upload got no data for {minutes} minutes; its partial volume was "
                                            "deleted. Start it again."), minutes=ABANDONED_AFTER.seconds // 60))
    if offset != session.received_bytes or not data or offset + len(data) > session.total_bytes:
        raise ChunkOutOfPlace(session)
    last = offset + len(data) == session.total_bytes
    with audited(actor=actor, action="volume.upload-finish", host=session.host, client_addr=client_addr,
                 message=f"{session.pool}/{session.volume}, {session.total_bytes} bytes") if last else nullcontext():
        vstorage.upload_to_volume(session.host.uri, session.pool, session.volume, offset, data)
    # Compare-and-set: of two copies of one chunk (a retry after a lost answer), one moves the offset.
    UploadSession.objects.filter(pk=session.pk, received_bytes=offset).update(
        received_bytes=F("received_bytes") + len(data), last_chunk_at=timezone.now())
    session.refresh_from_db()
    return session


def upload_cancel(*, actor: User, session_id: int, client_addr: str | None = None) -> StrOrPromise:
    session = _own_session(actor, session_id, "volume.upload-cancel", client_addr)
    if session.finished:
        raise ValidationError(_("This upload is complete; delete the volume instead."))
    _discard(session, actor=actor, action="volume.upload-cancel", client_addr=client_addr)
    return format_lazy(_("Upload of {name} cancelled; its partial volume was deleted."), name=session.volume)


def uploads_expire() -> int:
    """Discards every abandoned upload with its partial volume (`manage.py expireuploads`); returns how many."""
    abandoned = [session for session in UploadSession.objects.select_related("host", "owner")
                 .filter(last_chunk_at__lt=timezone.now() - ABANDONED_AFTER) if session.abandoned]
    expired = 0
    for session in abandoned:
        try:
            _discard(session, actor=session.owner, action="volume.upload-expire", client_addr=None)
        except VirtError:
            continue  # its host did not answer: audited as failed, and tried again next time
        expired += 1
    return expired


def _discard(session: UploadSession, *, actor: User, action: str, client_addr: str | None) -> None:
    """Deletes an unfinished upload's partial volume, its ownership record and the session."""
    with audited(actor=actor, action=action, host=session.host, client_addr=client_addr,
                 message=f"{session.pool}/{session.volume} at {session.received_bytes} of {session.total_bytes} bytes"):
        with suppress(StorageNotFound):  # already gone: what is left to drop is the records
            vstorage.delete_volume(session.host.uri, session.pool, session.volume)
        OwnedVolume.objects.filter(host=session.host, pool=session.pool, name=session.volume).delete()
        session.delete()
