"""A migration started through the API, followed to its end through the job URL it answered with.

A shut-off throwaway guest moves offline between the lab hosts (no boot to wait for: the live moves,
with their progress, are tests/integration/test_migration_lab.py's); the API's job is the same
MigrationJob, run by the same runner, as the page's.
"""

from __future__ import annotations

import pytest

from accounts.models import User
from tests.integration.helpers import domains, virsh, wait_until
from tests.integration.test_migration_lab import define, lab_pair  # noqa: F401 - lab_pair is a fixture
from tests.support.api import bearer

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_migration_started_through_the_api_is_followed_to_its_end_through_its_job_url(
        lab_pair, admin_user: User):  # noqa: F811 - the fixture
    lab1, lab2 = lab_pair
    uuid = define(lab1, "it-mig-api", start=False)
    api = bearer(admin_user, name="migrator")

    started = api.post(f"/api/v1/domains/lab1/{uuid}/migrations/",
                       {"destination": "lab2", "persist_dest": True, "undefine_source": True, "peer_to_peer": True},
                       content_type="application/json")
    assert started.status_code == 202, started.content
    job_url = started["Location"]
    assert started.json()["state"] in ("queued", "running")

    seen: list[str] = []

    def over() -> bool:
        job = api.get(job_url).json()
        seen.append(job["state"])
        return not job["active"]

    wait_until(over, timeout=120, what="the job URL says the migration ended")
    job = api.get(job_url).json()
    assert (job["state"], job["error"], job["mode"]) == ("succeeded", "", "offline"), seen
    assert job["finished_at"] is not None
    assert "it-mig-api" not in domains(lab1)
    assert virsh(lab2, "domstate", "it-mig-api") == "shut off"
    listed = api.get("/api/v1/domains/", {"all": "", "host": "lab2", "q": "it-mig-api"}).json()["domains"]
    assert [(row["name"], row["uuid"]) for row in listed] == [("it-mig-api", uuid)]
