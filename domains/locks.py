"""One action at a time per VM, across every dashboard process (the cache is shared with Redis)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.core.cache import cache

from .virt import OperationInProgress

# Longer than any single libvirt call we make from a request; a crashed worker's lock expires.
ACTION_LOCK_SECONDS = 300


@contextmanager
def domain_action_lock(host_id: int, uuid: str) -> Iterator[None]:
    key = f"domain-action:{host_id}:{uuid.lower()}"
    if not cache.add(key, "locked", timeout=ACTION_LOCK_SECONDS):
        raise OperationInProgress()
    try:
        yield
    finally:
        cache.delete(key)
