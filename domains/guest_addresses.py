"""Guest addresses, the one store: Django's cache, so shared between processes through Redis when there is one.

The watchers' AddressReaders (domains.virt.agent) and LeaseReaders (domains.virt.leases) and the agent panel
write here, each under its source, and every listing reads here (domains.virt.inventory.records_for), through
`virt.configure()`. With Redis the watchers
run in `watchhosts`, not in the daphne processes that render lists, and the lists show all the same
what they learned. Addresses only decorate a row: a cache that fails never fails a listing.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Collection, Sequence

from django.core.cache import cache

from .virt.addresses import AddressSource

logger = logging.getLogger(__name__)

TIMEOUT_SECONDS = 3600  # a guest nobody asks any more ages out; the watchers renew what they follow every 30 s


def _cache_key(uri: str, uuid: str, source: AddressSource) -> str:
    return f"guest-addresses:{hashlib.sha256(uri.encode()).hexdigest()[:24]}:{uuid}:{source}"


class CachedAddresses:
    """virt's AddressStore on Django's cache."""

    def read(self, uri: str, uuids: Collection[str],
             sources: Sequence[AddressSource]) -> dict[str, tuple[AddressSource, tuple[str, ...]]]:
        # Every source of every guest in one round trip.
        keys = {_cache_key(uri, uuid, source): (uuid, source) for uuid in uuids for source in sources}
        try:
            found = cache.get_many(list(keys))
        except Exception:
            logger.warning("reading guest addresses from the cache failed", exc_info=True)
            return {}
        shown: dict[str, tuple[AddressSource, tuple[str, ...]]] = {}
        for key, (uuid, source) in keys.items():  # each guest's sources in order: the first with addresses wins
            if found.get(key) and uuid not in shown:
                shown[uuid] = (source, tuple(found[key]))
        return shown

    def write(self, uri: str, uuid: str, addresses: tuple[str, ...],
              source: AddressSource = AddressSource.AGENT) -> None:
        try:
            cache.set(_cache_key(uri, uuid, source), list(addresses), TIMEOUT_SECONDS)
        except Exception:
            logger.warning("writing guest addresses to the cache failed", exc_info=True)


store = CachedAddresses()
