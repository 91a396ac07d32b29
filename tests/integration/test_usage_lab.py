"""Usage on a real lab guest: a busy loop started through the guest agent shows in the VM's chart data and in
/metrics within two sampling intervals, as the supervisor's watchers sample it (the default deployment)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

import lab
from accounts.models import User
from domains.models import Host
from domains.supervisor import Supervisor
from tests.integration.helpers import agent_answers, domains, virsh

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

INTERVAL = 3.0  # seconds between samples: short, so that two intervals are a short test
TOKEN = "usage-lab-metrics-token"  # noqa: S105 (a test's own)
BUSY = 50.0  # % of the guest's vCPUs


def guest_exec(host: lab.LabHost, domain: str, script: str) -> int:
    """Runs `sh -c script` in the guest through its agent, without waiting; its process id in the guest."""
    command = {"execute": "guest-exec", "arguments": {"path": "/bin/sh", "arg": ["-c", script]}}
    reply = virsh(host, "qemu-agent-command", domain, json.dumps(command), "--timeout", "10")
    return int(json.loads(reply)["return"]["pid"])


def chart_cpu(client: Client, host: str, uuid: str) -> list[tuple[float, float]]:
    """The VM page's hour chart: (time, CPU %) of every point, the latest sample's last."""
    response = client.get(f"/domains/{host}/{uuid}/usage/", {"span": "hour"})
    assert response.status_code == 200, response.content
    series = response.json()["series"]
    return list(zip(series["t"], series["cpu_percent"], strict=True))


def scraped(client: Client, host: str, uuid: str) -> tuple[float, float]:
    """/metrics: when the host's latest sample was taken (from its age), and the VM's CPU seconds in it."""
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    scraped_at = time.time()
    assert response.status_code == 200, response.content
    found = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            if sample.name == "vmportal_host_sample_age_seconds" and sample.labels["host"] == host:
                found["taken_at"] = scraped_at - sample.value
            if sample.name == "vmportal_domain_cpu_seconds_total" and sample.labels["uuid"] == uuid:
                found["cpu"] = sample.value
    assert set(found) == {"taken_at", "cpu"}, f"/metrics had {found} of {host} and {uuid}"
    return found["taken_at"], found["cpu"]


async def test_a_busy_guest_shows_above_half_its_cpu_in_the_chart_and_in_metrics_within_two_intervals(
    lab_hosts: list[lab.LabHost], admin_user: User, settings: Any
) -> None:
    settings.METRICS_TOKEN = TOKEN
    settings.USAGE_INTERVAL_SECONDS = INTERVAL  # the supervisor's, and /metrics' measure of a fresh sample
    target = lab_hosts[0]
    guest = next(name for name in sorted(domains(target, active_only=True))
                 if virsh(target, "domstate", name) == "running" and agent_answers(target, name))
    uuid = virsh(target, "domuuid", guest)
    await database_sync_to_async(Host.objects.create)(name=target.name, uri=target.uri)
    client = Client()
    await database_sync_to_async(client.force_login)(admin_user)
    supervisor = Supervisor()
    await supervisor.start()
    loop_pid = None
    try:
        # Two samples of the guest idle first: rates flow, and the busy loop's start is after them.
        await asyncio.sleep(2.5 * INTERVAL)
        idle = await database_sync_to_async(chart_cpu)(client, target.name, uuid)
        assert idle, "no usage sampled from an idle guest in 2.5 intervals"
        started = time.time()
        loop_pid = guest_exec(target, guest, "while :; do :; done")
        busy_point = None
        samples: dict[float, float] = {}  # /metrics: each sample's time and the VM's CPU seconds in it
        while (busy_point is None or len(samples) < 2) and time.time() < started + 2 * INTERVAL + 1:
            await asyncio.sleep(0.3)
            busy_point = busy_point or next(((at, cpu) for at, cpu in await database_sync_to_async(chart_cpu)(
                client, target.name, uuid) if at > started and cpu > BUSY), None)
            taken_at, cpu_seconds = await database_sync_to_async(scraped)(client, target.name, uuid)
            # A sample's time is read back from its age, give or take a scrape's rounding: a new sample is
            # one at least half an interval from every sample seen.
            if taken_at > started and all(abs(taken_at - seen) > INTERVAL / 2 for seen in samples):
                samples[taken_at] = cpu_seconds
    finally:
        if loop_pid is not None:
            guest_exec(target, guest, f"kill {loop_pid}")
        await supervisor.stop()
    assert busy_point is not None, f"the chart showed no CPU above {BUSY} % within two intervals of the loop"
    assert busy_point[0] <= started + 2 * INTERVAL + 0.5
    assert len(samples) >= 2, f"/metrics showed {len(samples)} samples taken within two intervals of the loop"
    (first_at, first), (second_at, second) = sorted(samples.items())[:2]
    assert second_at <= started + 2 * INTERVAL + 0.5
    # Its counters between the first two samples after the loop started: an interval of the busy guest.
    assert (second - first) / (second_at - first_at) * 100 > BUSY, "/metrics counted the guest's CPU too slowly"
