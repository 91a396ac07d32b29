"""The list's usage columns: CPU % with its trend and memory used, from each host's latest sample, sortable,
scoped like the rows, and pushed to open pages with every sample."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator

from accounts.models import User
from domains import history, live
from domains.models import Grant, Host, HostUsage
from tests.conftest import client_for
from tests.live_messages import read
from tests.support.live_sockets import signed_in_socket

WEB = "aaaaaaaa-0000-0000-0000-000000000001"
DB = "aaaaaaaa-0000-0000-0000-000000000002"
MAIL = "aaaaaaaa-0000-0000-0000-000000000003"


@pytest.fixture
def office(xml_host: Callable[..., Host]) -> Host:
    return xml_host("office", [{"name": "web", "uuid": WEB}, {"name": "db", "uuid": DB},
                               {"name": "mail", "uuid": MAIL}])


def figures(cpu: float, memory_kib: float, source: str = "guest") -> dict[str, object]:
    return dict.fromkeys(history.FIGURES, 0.0) | {"cpu_percent": cpu, "memory_used_kib": memory_kib,
                                                  "memory_source": source, "name": "", "trend": [cpu / 2, cpu]}


def sampled(host: Host, **by_uuid: dict[str, object]) -> None:
    HostUsage.objects.update_or_create(host=host, defaults={"taken_at": time.time(), "counters": {},
                                                            "rates": by_uuid})


def rows(user: User, **params: str) -> list[dict[str, object]]:
    response = client_for(user).get("/domains/", {"all": "", "host": "office", "format": "json", **params})
    assert response.status_code == 200, response.content
    return list(response.json()["domains"])


def test_the_rows_carry_their_latest_cpu_and_memory_and_sort_by_them(admin_user: User, office: Host) -> None:
    sampled(office, **{WEB: figures(12.5, 2048), DB: figures(80.0, 1024), MAIL: figures(3.0, 4096, "allocation")})
    by_name = {row["name"]: row for row in rows(admin_user)}
    assert (by_name["db"]["cpu_percent"], by_name["db"]["memory_used_kib"]) == (80.0, 1024)
    assert [row["name"] for row in rows(admin_user, sort="-cpu")] == ["db", "web", "mail"]
    assert [row["name"] for row in rows(admin_user, sort="-memory_used")] == ["mail", "web", "db"]
    sampled(office, **{WEB: figures(99.0, 2048), DB: figures(80.0, 1024), MAIL: figures(3.0, 4096)})
    assert [row["name"] for row in rows(admin_user, sort="-cpu")] == ["web", "db", "mail"]  # the next sample's


def test_a_vm_without_a_sample_yet_shows_a_dash_and_sorts_first(admin_user: User, office: Host) -> None:
    sampled(office, **{WEB: figures(12.5, 2048)})
    assert [row["name"] for row in rows(admin_user, sort="cpu")] == ["db", "mail", "web"]
    page = client_for(admin_user).get("/domains/", {"all": "", "host": "office"}).content.decode()
    assert f'id="domain-office-{WEB}-cpu" class="usage col-md">12.5 %' in page
    assert f'id="domain-office-{DB}-cpu" class="usage col-md">—' in page
    assert '<svg class="trend"' in page and 'aria-label="CPU over the last 2 samples"' in page
    assert f'id="domain-office-{WEB}-memory-used" class="usage col-md">2 MiB' in page


def test_a_tenant_sees_only_its_own_vms_figures(tenant_user: User, office: Host) -> None:
    Grant.objects.create(host=office, domain_uuid=WEB, user=tenant_user)
    sampled(office, **{WEB: figures(12.5, 2048), DB: figures(80.0, 1024)})
    assert [(row["name"], row["cpu_percent"]) for row in rows(tenant_user, sort="-cpu")] == [("web", 12.5)]
    page = client_for(tenant_user).get("/domains/", {"all": "", "host": "office"}).content.decode()
    assert DB not in page


async def list_socket(user: User, query: str) -> WebsocketCommunicator:
    return await signed_in_socket(user, f"/ws/domains/?{query}")


async def send_sample(host: Host, **by_uuid: dict[str, object]) -> None:
    group = live.usage_group(host.pk)
    await get_channel_layer().group_send(group, live.addressed(group, {
        "type": "live.usage", "host_id": host.pk, "taken_at": time.time(), "rates": by_uuid}))


@pytest.mark.django_db(transaction=True)
async def test_an_open_page_is_sent_its_own_rows_new_cells_only(tenant_user: User, office: Host) -> None:
    await database_sync_to_async(Grant.objects.create)(host=office, domain_uuid=WEB, user=tenant_user)
    socket = await list_socket(tenant_user, "all&host=office")
    await send_sample(office, **{WEB: figures(42.0, 4096), DB: figures(99.0, 1024)})
    message = read(await socket.receive_from(5))
    await socket.disconnect()
    assert message["type"] == "cells"
    assert message["ids"] == [f"domain-office-{WEB}-cpu", f"domain-office-{WEB}-memory-used"]
    assert "42.0 %" in message["html"] and "4 MiB" in message["html"] and "99.0" not in message["html"]


@pytest.mark.django_db(transaction=True)
async def test_a_page_in_cpu_order_is_put_in_the_new_sample_s_order(admin_user: User, office: Host) -> None:
    await database_sync_to_async(sampled)(office, **{WEB: figures(50.0, 1), DB: figures(40.0, 1),
                                                     MAIL: figures(30.0, 1)})
    socket = await list_socket(admin_user, "all&host=office&sort=-cpu")
    await database_sync_to_async(sampled)(office, **{WEB: figures(10.0, 1), DB: figures(40.0, 1),
                                                     MAIL: figures(90.0, 1)})
    await send_sample(office)  # the page reads the stored sample again
    messages: list[dict[str, Any]] = []
    while not messages or messages[-1]["type"] != "order":
        messages.append(read(await socket.receive_from(5)))
    await socket.disconnect()
    assert messages[-1]["ids"] == [f"domain-office-{uuid}" for uuid in (MAIL, DB, WEB)]
    assert {message["id"] for message in messages if message["type"] == "row"} == {
        f"domain-office-{uuid}" for uuid in (MAIL, WEB)}  # their figures changed; db's did not


def test_the_list_shows_the_top_consumers_of_what_the_user_may_see(tenant_user: User, admin_user: User,
                                                                   office: Host) -> None:
    Grant.objects.create(host=office, domain_uuid=WEB, user=tenant_user)
    sampled(office, **{WEB: figures(12.5, 2048) | {"name": "web", "host_cpu_percent": 3.0},
                       DB: figures(80.0, 1024) | {"name": "db", "host_cpu_percent": 20.0}})
    every = client_for(admin_user).get("/domains/").content.decode()
    cpu_table = every[every.index('data-top="cpu"'):every.index('data-top="memory"')]
    assert cpu_table.index(f'data-uuid="{DB}"') < cpu_table.index(f'data-uuid="{WEB}"')  # the host's share first
    assert "20.0 % <small" in cpu_table and "on office" in cpu_table
    own = client_for(tenant_user).get("/domains/").content.decode()
    assert f'data-uuid="{WEB}"' in own and DB not in own


def test_the_vm_page_links_its_host_for_those_who_see_hosts(operator_user: User, tenant_user: User,
                                                          office: Host) -> None:
    Grant.objects.create(host=office, domain_uuid=WEB, user=tenant_user)
    link = 'href="/hosts/office/"'
    assert link in client_for(operator_user).get(f"/domains/office/{WEB}/").content.decode()
    assert link not in client_for(tenant_user).get(f"/domains/office/{WEB}/").content.decode()
