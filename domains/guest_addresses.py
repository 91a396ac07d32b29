"""Guest addresses, the one store: Django's cache, so shared between processes through Redis when there is one.

The watchers' AddressReaders (domains.virt.agent) and the agent panel write here, and every listing
reads here (domains.virt.inventory.records_for), through `virt.configure()`. With Redis the watchers
run in `watchhosts`, not in the daphne processes that render lists, and the lists show all the same
what they learned. Addresses only decorate a row: a cache that fails never fails a listing.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Collection

from django.core.cache import cache

logger = logging.getLogger(__name__)

TIMEOUT_SECONDS = 3600  # a guest nobody asks any more ages out; the watchers renew what they follow every 30 s


def _cache_key(uri: str, uuid: str) -> str:
    return f"guest-addresses:{hashlib.sha256(uri.encode()).hexdigest()[:24]}:{uuid}"


class CachedAddresses:
    """virt's AddressStore on Django's cache."""

    def read(self, uri: str, uuids: Collection[str]) -> dict[str, tuple[str, ...]]:
        keys = {_cache_key(uri, uuid): uuid for uuid in uuids}
        try:
            found = cache.get_many(list(keys))
        except Exception:
            logger.warning("reading guest addresses from the cache failed", exc_info=True)
            return {}
        return {keys[key]: tuple(value) for key, value in found.items() if value}

    def write(self, uri: str, uuid: str, addresses: tuple[str, ...]) -> None:
        try:
            cache.set(_cache_key(uri, uuid), list(addresses), TIMEOUT_SECONDS)
        except Exception:
            logger.warning("writing guest addresses to the cache failed", exc_info=True)


store = CachedAddresses()
