"""Reads of storage pools and volumes, scoped to the user through domains.access' storage rules.

Admins and operators see every pool of a host (access.sees_hosts); a tenant sees the pools its define
allowance creates volumes in and the shared image pools, and in them its own volumes and the shared
images. Anything else, and a host or pool it may not see, is the same 404 as one that does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.db.models import F
from django.http import Http404

from domains import virt
from domains.access import StorageScope, is_admin, storage_scope
from domains.errors import error_message
from domains.models import Host
from domains.selectors import enabled_hosts
from domains.virt import storage as vstorage
from domains.virt.errors import StorageNotFound

from .models import UploadSession

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser

    from accounts.models import User


def audit_host(host_name: str) -> Host | None:
    """The host an audit row names, before the gate has judged the request (never shown to the user)."""
    return Host.objects.filter(name=host_name).first()


def storage_host(user: User | AnonymousUser, host_name: str) -> tuple[Host, StorageScope]:
    """The gate of the storage pages: an enabled host where the user sees some pool."""
    host = enabled_hosts().filter(name=host_name).first()
    if host is None or not user.is_authenticated or not user.is_active:
        raise Http404("No such host.")
    scope = storage_scope(user, host)
    if not (scope.unlimited or scope.new_volume_pools or scope.shared_image_pools):
        raise Http404("No such host.")
    return host, scope


def storage_pool(user: User | AnonymousUser, host_name: str, pool: str) -> tuple[Host, StorageScope]:
    host, scope = storage_host(user, host_name)
    if not scope.sees_pool(pool):
        raise Http404("No such pool.")
    return host, scope


def storage_volume(user: User | AnonymousUser, host_name: str, pool: str,
                   name: str) -> tuple[Host, StorageScope, virt.VolumeInfo]:
    """A volume the user sees (its own, a shared image; any for admins and operators), as libvirt has it now."""
    host, scope = storage_pool(user, host_name, pool)
    if not scope.may_attach_image(f"{pool}/{name}"):
        raise Http404("No such volume.")
    try:
        return host, scope, vstorage.get_volume(host.uri, pool, name)
    except StorageNotFound as error:
        raise Http404("No such volume.") from error


@dataclass(frozen=True)
class PoolListing:
    host: Host
    pools: tuple[virt.PoolCapacity, ...]
    error: str  # why the pools could not be read, as this user may read it; "" when they were
    may_define: bool


def pool_list(*, user: User | AnonymousUser, host_name: str) -> PoolListing:
    host, scope = storage_host(user, host_name)
    try:
        pools, error = vstorage.pool_capacities(host.uri), ""
    except virt.VirtError as failure:
        pools, error = (), error_message(user=user, error=failure)
    return PoolListing(host, tuple(pool for pool in pools if scope.sees_pool(pool.name)), error,
                       may_define=is_admin(user))


@dataclass(frozen=True)
class VolumeRow:
    volume: virt.VolumeInfo
    mine: bool  # the user may resize and delete it


@dataclass(frozen=True)
class PoolPage:
    host: Host
    pool: virt.PoolCapacity
    volumes: tuple[VolumeRow, ...]
    scope: StorageScope
    uploads: tuple[UploadSession, ...]  # the user's unfinished uploads into this pool
    may_create: bool  # new volumes and uploads may go to this pool
    may_manage: bool  # start, stop, refresh, autostart
    may_download: bool


def pool_page(*, user: User, host_name: str, pool: str) -> PoolPage:
    host, scope = storage_pool(user, host_name, pool)
    try:
        capacity = vstorage.pool_capacity(host.uri, pool)
    except StorageNotFound as error:
        raise Http404("No such pool.") from error
    volumes = tuple(VolumeRow(volume, scope.may_change(volume.key))
                    for volume in vstorage.pool_volumes(host.uri, pool) if scope.may_attach_image(volume.key))
    uploads = tuple(UploadSession.objects.filter(host=host, pool=pool, owner=user)
                    .exclude(received_bytes=F("total_bytes")))
    return PoolPage(host, capacity, volumes, scope, uploads,
                    may_create=capacity.active and (scope.unlimited or pool in scope.new_volume_pools),
                    may_manage=scope.unlimited, may_download=is_admin(user))


def upload_session_get(*, user: User | AnonymousUser, session_id: int) -> UploadSession:
    """One of the user's own uploads; anybody else's is a 404."""
    session = UploadSession.objects.filter(pk=session_id, owner_id=user.pk, host__enabled=True).first()
    if session is None:
        raise Http404("No such upload.")
    return session
