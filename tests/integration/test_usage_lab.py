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


def scraped_cpu_seconds(client: Client, uuid: str) -> float:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200, response.content
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            if sample.name == "vmportal_domain_cpu_seconds_total" and sample.labels["uuid"] == uuid:
                return float(sample.value)
    raise AssertionError(f"no vmportal_domain_cpu_seconds_total for {uuid}")


async def test_a_busy_guest_shows_above_half_its_cpu_in_the_chart_and_in_metrics_within_two_intervals(
    lab_hosts: list[lab.LabHost], admin_user: User, settings: Any
) -> None:
    settings.METRICS_TOKEN = TOKEN
    target = lab_hosts[0]
    guest = next(name for name in sorted(domains(target, active_only=True))
                 if virsh(target, "domstate", name) == "running" and agent_answers(target, name))
    uuid = virsh(target, "domuuid", guest)
    await database_sync_to_async(Host.objects.create)(name=target.name, uri=target.uri)
    client = Client()
    await database_sync_to_async(client.force_login)(admin_user)
    supervisor = Supervisor(usage_interval=INTERVAL)
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
        while busy_point is None and time.time() < started + 2 * INTERVAL + 1:
            await asyncio.sleep(0.5)
            busy_point = next(((at, cpu) for at, cpu in await database_sync_to_async(chart_cpu)(
                client, target.name, uuid) if at > started and cpu > BUSY), None)
        # /metrics gives counters: two scrapes an interval apart, with one sample of the busy guest between them
        # (the first sample after the loop started was taken by the first scrape).
        scrapes = []
        for at in (started + 1.1 * INTERVAL, started + 2.1 * INTERVAL):
            await asyncio.sleep(max(0.0, at - time.time()))
            scrapes.append((time.time(), await database_sync_to_async(scraped_cpu_seconds)(client, uuid)))
    finally:
        if loop_pid is not None:
            guest_exec(target, guest, f"kill {loop_pid}")
        await supervisor.stop()
    assert busy_point is not None, f"the chart showed no CPU above {BUSY} % within two intervals of the loop"
    assert busy_point[0] <= started + 2 * INTERVAL + 0.5
    (before_at, before), (after_at, after) = scrapes
    assert (after - before) / (after_at - before_at) * 100 > BUSY, "/metrics counted the guest's CPU too slowly"
