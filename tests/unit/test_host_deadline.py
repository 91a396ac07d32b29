"""A host that accepts connections and never answers holds no page longer than the host deadline."""

from __future__ import annotations

import time

from django.conf import settings

from domains import virt
from domains.models import Host
from tests.conftest import client_for


def test_the_vm_page_of_a_silent_host_says_unreachable_within_the_deadline(admin_user, silent_loopback_uri):
    Host.objects.create(name="silent", uri=silent_loopback_uri)
    virt.pool.open_timeout = 0.5
    try:
        started = time.monotonic()
        response = client_for(admin_user).get("/domains/silent/6695eb01-f6a4-8304-79aa-97f2502e193f/")
        elapsed = time.monotonic() - started
    finally:
        virt.pool.open_timeout = settings.HOST_DEADLINE_SECONDS
    assert response.status_code == 503
    assert "did not answer in time" in response.content.decode()
    assert "127.0.0.1" not in response.content.decode()
    assert elapsed < 2.0
