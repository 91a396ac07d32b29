"""Guest addresses shared between processes through the cache (Redis in a scale-out deployment).

The watchers learn what each guest's agent reports (domains.virt.agent.AddressReader). With Redis
they run in `watchhosts`, not in the daphne processes that render lists, so the supervisor writes
what changed here and the list reads it back for running VMs whose own process knows nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from django.core.cache import cache

from . import virt

TIMEOUT_SECONDS = 3600  # a lost update ages out; the watchers refresh what they follow every 30 s

Key = tuple[int, str]  # (host id, domain UUID)


def _cache_key(key: Key) -> str:
    return f"guest-addresses:{key[0]}:{key[1]}"


def share(addresses: Mapping[Key, tuple[str, ...]]) -> None:
    cache.set_many({_cache_key(key): list(value) for key, value in addresses.items()}, TIMEOUT_SECONDS)


def with_shared(host_id: int, records: Iterable[virt.DomainRecord]) -> list[virt.DomainRecord]:
    """The records, running ones without addresses given those the watchers shared."""
    records = list(records)
    wanted = {_cache_key((host_id, record.uuid)): record for record in records
              if record.active and not record.addresses}
    if not wanted:
        return records
    found = cache.get_many(list(wanted))
    filled = {wanted[key].uuid: tuple(value) for key, value in found.items() if value}
    return [dataclasses.replace(record, addresses=filled[record.uuid]) if record.uuid in filled else record
            for record in records]
