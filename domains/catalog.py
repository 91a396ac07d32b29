"""What every host has, as its watcher keeps it current: the list's source, instead of asking every host
on every request.

    embedded (no REDIS_URL)   the watchers run in this process (domains.supervisor registers them here)
    REDIS_URL                 `manage.py watchhosts` runs them and publishes each host's records to the
                              shared cache (Publisher); every web process keeps a copy of its own,
                              fetched again only for the hosts whose version moved
A host no watcher has answered for yet is waited for up to the host deadline; a host nobody watches (just
added, or the watchers' process is away) is read directly, as before, and the watchers are asked to take
it on (live.watch_hosts), so the next request finds it watched.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

from . import live, virt
from .models import Host

logger = logging.getLogger(__name__)

PUBLISHED_SECONDS = 30  # a published host not refreshed this long (its watchers' process died) is not trusted


@dataclass(frozen=True)
class HostInventory:
    """One host's domains as the list shows them, and how they were learnt."""

    records: tuple[virt.DomainRecord, ...]
    error: virt.VirtError | None  # why the host does not answer (its records are then as last seen)
    listed_at: float | None  # wall-clock time of the last whole listing (None: read just now)
    watched: bool  # kept current by a watcher's events; else read once for this request
    version: object  # changes whenever `records` or `error` do

    @property
    def reachable(self) -> bool:
        return self.error is None


# --- Embedded: the watchers of this process. ---

_local: dict[int, virt.HostWatcher] = {}
_local_lock = threading.Lock()


def watching(host_id: int, watcher: virt.HostWatcher | None) -> None:
    """Told by this process's supervisor which watcher keeps a host (None: none any more)."""
    with _local_lock:
        if watcher is None:
            _local.pop(host_id, None)
        else:
            _local[host_id] = watcher


def _from_watcher(watcher: virt.HostWatcher, ends_at: float) -> HostInventory:
    if not watcher.wait_for_answer(max(0.0, ends_at - time.monotonic())):
        return HostInventory((), virt.HostUnreachable(virt.NO_ANSWER_IN_TIME), None, True, None)
    watched = watcher.watched()
    error = virt.HostUnreachable(virt.summary_for_reader(watched.message)) if watched.reachable is False else None
    return HostInventory(watched.records, error, watched.listed_at, True, (id(watcher), watched.version))


# --- Redis: published by watchhosts through the shared cache, mirrored per process. ---


def _version_key(host_id: int) -> str:
    return f"inventory:{host_id}:version"


def _records_key(host_id: int) -> str:
    return f"inventory:{host_id}:records"


class Publisher:
    """The watchers' side (watchhosts): each host's records in the shared cache, rewritten when they change.

    Records go as one value per host (pickled by the cache), then a new version, so that a reader who saw
    a version finds records at least that new."""

    def publish(self, host_id: int, watched: virt.WatchedHost) -> None:
        cache.set(_records_key(host_id), (watched.records, watched.reachable, watched.message, watched.listed_at),
                  PUBLISHED_SECONDS)
        cache.set(_version_key(host_id), time.time_ns(), PUBLISHED_SECONDS)

    def keep(self, host_ids: Iterable[int]) -> None:
        """Still watching these: their published records stay trusted for another PUBLISHED_SECONDS."""
        for host_id in host_ids:
            cache.touch(_records_key(host_id), PUBLISHED_SECONDS)
            cache.touch(_version_key(host_id), PUBLISHED_SECONDS)

    def withdraw(self, host_id: int) -> None:
        cache.delete_many([_records_key(host_id), _version_key(host_id)])


class _Mirror:
    """This process's copy of what watchhosts published, fetched again per host when its version moves."""

    def __init__(self) -> None:
        self._hosts: dict[int, HostInventory] = {}
        self._lock = threading.Lock()

    def read(self, host_ids: list[int]) -> dict[int, HostInventory]:
        versions = cache.get_many([_version_key(host_id) for host_id in host_ids])
        found: dict[int, HostInventory] = {}
        stale: list[int] = []
        with self._lock:
            for host_id in host_ids:
                version = versions.get(_version_key(host_id))
                if version is None:
                    continue  # nobody publishes it: read directly
                known = self._hosts.get(host_id)
                if known is not None and known.version == version:
                    found[host_id] = known
                else:
                    stale.append(host_id)
        if stale:
            published = cache.get_many([_records_key(host_id) for host_id in stale])
            for host_id in stale:
                value = published.get(_records_key(host_id))
                if value is None:
                    continue
                records, reachable, message, listed_at = value
                if reachable is None:  # its watcher has not answered yet
                    continue
                error = None if reachable else virt.HostUnreachable(virt.summary_for_reader(message))
                found[host_id] = HostInventory(records, error, listed_at, True, versions[_version_key(host_id)])
            with self._lock:
                self._hosts.update({host_id: found[host_id] for host_id in stale if host_id in found})
        return found


_mirror = _Mirror()


# --- The list's one entry point. ---


def inventories(hosts: list[Host], *, deadline: float | None = None) -> dict[Host, HostInventory]:
    """Each host's domains as its watcher knows them; read directly, within the deadline, where none does."""
    deadline = settings.HOST_DEADLINE_SECONDS if deadline is None else deadline
    ends_at = time.monotonic() + deadline
    with _local_lock:
        local = {host.pk: _local.get(host.pk) for host in hosts}
    found: dict[Host, HostInventory] = {}
    for host in hosts:
        watcher = local[host.pk]
        if watcher is not None and watcher.uri == host.uri:
            found[host] = _from_watcher(watcher, ends_at)
    if settings.REDIS_URL and len(found) < len(hosts):
        published = _mirror.read([host.pk for host in hosts if host not in found])
        found.update({host: published[host.pk] for host in hosts if host.pk in published})
    unwatched = [host for host in hosts if host not in found]
    if unwatched:
        found.update(_read_now(unwatched, max(0.0, ends_at - time.monotonic())))
        live.watch_hosts(host.pk for host in unwatched)
    return {host: found[host] for host in hosts}


def _read_now(hosts: list[Host], deadline: float) -> dict[Host, HostInventory]:
    results = virt.fan_out.run({host: host.uri for host in hosts},
                               lambda uri: virt.list_domains(uri, ("all",)), deadline)
    return {
        host: HostInventory((), result, None, False, None) if isinstance(result, virt.VirtError)
        else HostInventory(tuple(result), None, None, False, None)
        for host, result in results.items()
    }
