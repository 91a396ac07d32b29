"""What API tests share: a client carrying a user's new token, and a finished migration job to read."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.test import Client

from accounts.models import User
from api import services
from domains.models import Host, MigrationJob
from tests.conftest import TEST_DOMAIN_UUID

FINISHED_JOB_ID = 4242


@pytest.fixture(autouse=True)
def api_test_defaults(settings) -> None:
    """Imported by each API test module: a cheap password hasher (users are made per test) and an empty cache
    (throttle counters, per-VM action locks)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    cache.clear()


def bearer(user: User, *, name: str = "tests", read_only: bool = False) -> Client:
    """A client sending a fresh token of `user`'s as `Authorization: Bearer`."""
    _token, text = services.token_create(actor=user, name=name, read_only=read_only)
    return Client(headers={"Authorization": f"Bearer {text}"})


def finished_migration(*, actor: User, source: Host) -> MigrationJob:
    """A migration of test:///default's "test" VM that succeeded, to a host since removed."""
    return MigrationJob.objects.create(
        pk=FINISHED_JOB_ID, actor=actor, actor_name=actor.username, domain_uuid=TEST_DOMAIN_UUID, domain_name="test",
        source=source, source_name=source.name, destination=None, destination_name="gone", live=True,
        state=MigrationJob.State.SUCCEEDED)
