"""manage.py watchhosts's lease in the shared cache (the locmem cache here; Redis in a deployment)."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from domains.management.commands.watchhosts import LEASE_KEY, _renew, _take_lease


@pytest.fixture(autouse=True)
def no_lease() -> None:
    cache.delete(LEASE_KEY)


def test_one_process_holds_the_lease_and_renews_it() -> None:
    assert _take_lease("vm:1")
    assert not _take_lease("vm:2")  # the standby
    assert _renew("vm:1")
    assert not _renew("vm:2")


def test_a_lease_a_restarted_redis_forgot_is_taken_again_by_its_holder() -> None:
    assert _take_lease("vm:1")
    cache.clear()  # Redis restarted without its data
    assert _renew("vm:1")
    assert cache.get(LEASE_KEY) == "vm:1"
    assert not _take_lease("vm:2")


def test_the_lease_cannot_be_taken_while_redis_is_away(monkeypatch: pytest.MonkeyPatch) -> None:
    def away(*args: object, **kwargs: object) -> None:
        raise ConnectionError("Redis is away")

    monkeypatch.setattr(cache, "add", away)
    assert not _take_lease("vm:2")
