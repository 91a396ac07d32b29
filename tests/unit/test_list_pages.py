"""The list at scale: served from the watchers' records, sorted by any column, cut into pages, and a live
page of a longer list that rows of other pages move."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from accounts.models import User
from domains import catalog, virt
from domains.models import Host
from domains.supervisor import start_supervisor, stop_supervisor
from tests.conftest import client_for
from tests.unit.test_live_consumers import connect, publish

pytestmark = pytest.mark.django_db(transaction=True)

NAMES = ["delta", "alpha", "echo", "charlie", "bravo"]
UUIDS = [f"cccccccc-0000-4000-8000-00000000000{n}" for n in range(len(NAMES))]


@pytest.fixture(autouse=True)
def fast_password_hashing(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def five(xml_host: Callable[..., Host]) -> Host:
    """Five running VMs; their titles sort the other way round from their names."""
    return xml_host("five", [{"name": name, "uuid": uuid, "title": f"T{9 - index}"}
                             for index, (name, uuid) in enumerate(sorted(zip(NAMES, UUIDS, strict=True)))])


def names(user: User, **params: str) -> tuple[list[str], dict[str, Any]]:
    response = client_for(user).get("/domains/", {"all": "", "host": "five", "format": "json", **params})
    assert response.status_code == 200, response.content
    body = response.json()
    return [row["name"] for row in body["domains"]], body


def test_sorted_by_any_column_either_way(admin_user: User, five: Host):
    assert names(admin_user)[0] == sorted(NAMES)  # host, then name
    assert names(admin_user, sort="-name")[0] == sorted(NAMES, reverse=True)
    assert names(admin_user, sort="title")[0] == sorted(NAMES, reverse=True)  # T9 alpha ... T5 echo
    assert names(admin_user, sort="uuid")[0] == [NAMES[UUIDS.index(uuid)] for uuid in sorted(UUIDS)]


def test_a_page_sends_only_its_rows_with_the_whole_count(admin_user: User, five: Host):
    shown, body = names(admin_user, per_page="2", page="2")
    assert shown == ["charlie", "delta"]
    assert (body["count"], body["page"], body["pages"], body["per_page"]) == (5, 2, 3, 2)
    # Past the last page: the last page, as Django's Paginator.get_page.
    shown, body = names(admin_user, per_page="2", page="9")
    assert (shown, body["page"]) == (["echo"], 3)


@pytest.mark.parametrize("params", [{"sort": "colour"}, {"per_page": "501"}, {"page": "0"}, {"page": "two"}])
def test_paging_and_sorting_that_make_no_sense_are_refused(admin_user: User, five: Host, params: dict[str, str]):
    response = client_for(admin_user).get("/domains/", {"all": "", "format": "json", **params})
    assert response.status_code == 400
    assert response.json()["error"]


def test_the_page_links_keep_the_query(admin_user: User, five: Host):
    body = client_for(admin_user).get("/domains/?all&host=five&q=a&sort=-memory&per_page=2").content.decode()
    assert "1–2 of 4 virtual machines" in body  # alpha, bravo, charlie, delta
    assert 'href="?all&amp;host=five&amp;q=a&amp;sort=-memory&amp;page=2&amp;per_page=2" rel="next"' in body
    # The heading of the column it is sorted by reverses it; another heading sorts by its own column.
    assert 'href="?all&amp;host=five&amp;q=a&amp;sort=memory&amp;per_page=2"' in body
    assert 'href="?all&amp;host=five&amp;q=a&amp;sort=name&amp;per_page=2"' in body
    assert 'aria-sort="descending"' in body


@pytest.fixture
async def watched(five: Host) -> AsyncIterator[Host]:
    """This process's supervisor watches the host, as the default deployment's web process does."""
    supervisor = await start_supervisor()
    deadline = time.monotonic() + 5
    while (watcher := supervisor.watcher(five.pk)) is None or watcher.reachable is not True:
        assert time.monotonic() < deadline, "the watcher did not list its host"
        await asyncio.sleep(0.05)
    yield five
    await stop_supervisor()


async def test_a_watched_host_is_listed_from_its_watcher_without_asking_it(
    admin_user: User, watched: Host, monkeypatch: pytest.MonkeyPatch
):
    def no_reads(*_args: object) -> None:
        raise AssertionError("the list asked the host")

    monkeypatch.setattr(virt, "list_domains", no_reads)
    monkeypatch.setattr(virt.fan_out, "run", no_reads)
    shown, body = await database_sync_to_async(names)(admin_user)
    assert shown == sorted(NAMES)
    hosts = {entry["host"]: entry for entry in body["hosts"]}
    assert hosts["five"]["watched"] is True and hosts["five"]["listed_at"]


async def test_a_host_nobody_watches_is_read_and_then_watched(admin_user: User, five: Host, xml_host):
    supervisor = await start_supervisor()
    try:
        late = await database_sync_to_async(xml_host)("late", [{"name": "new", "uuid": UUIDS[0]}])
        _shown, body = await database_sync_to_async(names)(admin_user, host="late")
        assert [entry["watched"] for entry in body["hosts"]] == [False]
        deadline = time.monotonic() + 5
        while supervisor.watcher(late.pk) is None:  # asked at once, not at the next look at the host table
            assert time.monotonic() < deadline, "nobody took the new host on"
            await asyncio.sleep(0.05)
    finally:
        await stop_supervisor()


def test_what_watchhosts_publishes_is_what_other_processes_list(admin_user: User, five: Host, settings):
    """With Redis, the watchers run in watchhosts: the web processes list what it published in the shared cache."""
    settings.REDIS_URL = "redis://unused"  # the catalog reads the shared cache (here: this process's own)
    records = tuple(virt.list_domains(five.uri))
    paused = replace(records[0], state=virt.DomainState.PAUSED, id=None)
    watched = virt.WatchedHost((paused, *records[1:]), True, "", time.time(), 1)
    catalog.Publisher().publish(five.pk, watched)
    try:
        shown, body = names(admin_user, sort="state", per_page="1")
        assert shown == [paused.name] and body["hosts"][0]["watched"] is True
        catalog.Publisher().publish(five.pk, replace(watched, reachable=False, message="gone quiet"))
        _shown, body = names(admin_user)
        assert body["unreachable_hosts"] == [{"host": "five", "error": "gone quiet"}]
    finally:
        catalog.Publisher().withdraw(five.pk)
    assert names(admin_user)[1]["hosts"][0]["watched"] is False  # withdrawn: read directly again


async def test_a_row_leaving_a_page_of_a_longer_list_brings_the_next_one(
    sockets, admin_user: User, five: Host
):
    page = await connect(sockets, "/ws/domains/?state-running&host=five&per_page=2", admin_user)
    records = {record.name: record for record in await database_sync_to_async(virt.list_domains)(five.uri)}
    await database_sync_to_async(virt.run_action)(five.uri, records["alpha"].uuid, virt.Action.PAUSE)
    paused = await database_sync_to_async(virt.get_domain)(five.uri, records["alpha"].uuid)
    await publish(five, virt.DomainChanged(2_000, paused, previous=records["alpha"]))

    row = await page.receive()
    assert row["type"] == "row" and row["id"] == f"domain-five-{records['charlie'].uuid}"
    assert await page.receive() == {"type": "order", "ids": [f"domain-five-{records[name].uuid}"
                                                             for name in ("bravo", "charlie")]}
    footer = await page.receive()
    assert footer["type"] == "footer" and "1–2 of 4 virtual machines" in footer["html"]
    # A change within the page that moves nothing stays a row, in place.
    await publish(five, virt.DomainChanged(2_001, replace(records["bravo"], title="renamed"),
                                           previous=records["bravo"]))
    row = await page.receive()
    assert row["type"] == "row" and "renamed" in row["html"]
    assert await page.silent()


def test_a_rows_actions_post_without_script(admin_user: User, five: Host):
    """Rows are rendered once for every request, but each page's forms carry that request's CSRF token."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    page = client.get("/domains/", {"all": "", "host": "five"}).content.decode()
    alpha = NAMES.index("alpha")
    form = re.search(rf'<form method="post" action="(/domains/five/{UUIDS[alpha]}/[^"]*)".*?'
                     r'name="csrfmiddlewaretoken" value="([^"]+)"', page, re.DOTALL)
    assert form is not None, "the row's form carries no token"
    answer = client.post(form.group(1), {"action": "pause", "csrfmiddlewaretoken": form.group(2)})
    assert answer.status_code == 302  # done and redirected, not refused (403)
    assert virt.get_domain(five.uri, UUIDS[alpha]).state is virt.DomainState.PAUSED
