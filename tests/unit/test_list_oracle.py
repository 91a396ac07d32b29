"""The domain list against virsh itself: same URI, same options, same VMs.

Both sides open tests/fixtures/inventory.xml through libvirt's test driver, which gives every
connection its own fresh copy of the file's state, so virsh (another process) and the dashboard
(the pooled connection) start from the same inventory. What the file cannot say (autostart), and
the lifecycle changes one test makes, are applied on each side through its own connection: by
commands earlier in the same virsh invocation, and through the pool on the dashboard's side.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from itertools import combinations
from pathlib import Path

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from accounts.models import User
from domains import virt
from domains.models import Host
from domains.supervisor import start_supervisor, stop_supervisor
from tests.conftest import client_for

INVENTORY = Path(__file__).resolve().parents[1] / "fixtures" / "inventory.xml"
URI = f"test://{INVENTORY}"
HOST = "oracle"
EVERY_VM = frozenset({
    "web-1", "web-2", "build-tmp", "scratch-snap", "db-paused", "ci-paused-tmp", "idle", "stopping",
    "crashed", "sleeper", "limbo", "off-plain", "off-saved", "off-saved-snap", "off-snap", "off-auto",
})
AUTOSTARTED = ("web-1", "db-paused", "crashed", "off-saved-snap", "off-auto")

OPTION_SETS: list[tuple[str, ...]] = [
    (), *((option,) for option in virt.LIST_OPTIONS), *combinations(virt.LIST_OPTIONS, 2)
]


# virsh 9.0 watches a job (managedsave) from a main loop that can miss the end of the job's thread and
# then polls forever: seen under load, the job thread gone and the main thread polling every 500 ms.
# Each virsh starts from the inventory file, so running it again is the same run.
VIRSH_TRIES, VIRSH_SECONDS = 3, 10


def virsh(*commands: str, quiet: bool = True, must_succeed: bool = True) -> subprocess.CompletedProcess[str]:
    """One virsh process on the inventory: mark the autostarted VMs, then run `commands` in order."""
    script = "; ".join([*(f"autostart {name}" for name in AUTOSTARTED), *commands])
    for attempt in range(1, VIRSH_TRIES + 1):
        try:
            done = subprocess.run(
                ["virsh", *(["-q"] if quiet else []), "-c", URI, script],
                capture_output=True, text=True, timeout=VIRSH_SECONDS, check=False, stdin=subprocess.DEVNULL,
            )
            break
        except subprocess.TimeoutExpired:
            if attempt == VIRSH_TRIES:
                raise
    if must_succeed and done.returncode != 0:
        pytest.fail(f"virsh {script!r} failed: {done.stderr}")
    return done


def virsh_list(options: Iterable[str], *outputs: str, must_succeed: bool = True) -> subprocess.CompletedProcess[str]:
    return virsh(" ".join(["list", *(f"--{flag}" for flag in (*outputs, *options))]), must_succeed=must_succeed)


def lines(output: str) -> list[str]:
    return [line.strip() for line in output.splitlines() if line.strip()]


def virsh_table(output: str) -> dict[str, dict[str, str]]:
    """virsh's table (header included) as {name: {column: text}}, cut at the header's offsets."""
    rows = output.splitlines()
    header_at = next(i for i, line in enumerate(rows) if line.split()[:2] == ["Id", "Name"])
    header = rows[header_at]
    columns = header.split()
    starts = [header.index(column) for column in columns]
    table: dict[str, dict[str, str]] = {}
    for line in rows[header_at + 2:]:
        if not line.strip():
            continue
        cells = [line[start:end].strip() for start, end in zip(starts, [*starts[1:], None], strict=True)]
        table[cells[1]] = dict(zip(columns, cells, strict=True))
    return table


@pytest.fixture(autouse=True)
def fast_password_hashing(settings) -> None:
    """Every case logs an admin in; a real password hash per case would cost more than the case."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def oracle_host(db: None) -> Host:
    """The inventory registered as a host, with the same VMs autostarted as in every virsh call."""
    host = Host.objects.create(name=HOST, uri=URI)
    conn = virt.pool.get(URI).conn  # the pooled connection the dashboard lists through in this test
    for name in AUTOSTARTED:
        conn.lookupByName(name).setAutostart(1)
    return host


@pytest.fixture
def admin(admin_user: User, oracle_host: Host) -> Client:
    return client_for(admin_user)


def dashboard(client: Client, *flags: str, json: bool = False):
    """GET /domains/ the way a hand-written URL does: bare flag names, then host (and format)."""
    query = [*flags, f"host={HOST}", *(["format=json"] if json else [])]
    return client.get("/domains/?" + "&".join(query))


def api(client: Client, *flags: str):
    """GET /api/v1/domains/ with the same query string as the page."""
    return client.get("/api/v1/domains/?" + "&".join([*flags, f"host={HOST}"]))


def json_rows(client: Client, *flags: str) -> dict[str, dict[str, object]]:
    response = dashboard(client, *flags, json=True)
    assert response.status_code == 200
    body = response.json()
    assert body["unreachable_hosts"] == []
    return {row["name"]: row for row in body["domains"]}


@dataclass
class ListedVM:
    """One row (`<tr>` or `<li>` with id="domain-<uuid>") of the list page, as a reader sees it."""

    tag: str
    attrs: dict[str, str]
    headers: list[str]
    parts: list[str] = field(default_factory=list)
    cells: list[str] = field(default_factory=list)
    state: str = ""

    @property
    def text(self) -> str:
        return " ".join("".join(self.parts).split())

    def cell(self, header: str) -> str:
        """The text of this table row's cell under the column headed `header`."""
        return self.cells[self.headers.index(header)]


class _ListedVMs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[ListedVM] = []
        self.headers: list[str] = []
        self._header: list[str] | None = None
        self._row: ListedVM | None = None
        self._cell: list[str] | None = None
        self._state: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {key: value or "" for key, value in attrs}
        if tag in ("tr", "li") and attributes.get("id", "").startswith("domain-"):
            self._row = ListedVM(tag, attributes, self.headers)
            self.rows.append(self._row)
        elif tag == "th":
            self._header = []
        elif self._row is not None and tag == "td":
            self._cell = []
        elif self._row is not None and tag == "span" and "state" in attributes.get("class", "").split():
            self._state = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "th" and self._header is not None:
            self.headers.append(" ".join("".join(self._header).split()))
            self._header = None
        if self._row is None:
            return
        if tag == "td" and self._cell is not None:
            self._row.cells.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "span" and self._state is not None:
            self._row.state = "".join(self._state).strip()
            self._state = None
        elif tag == self._row.tag:
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._header is not None:
            self._header.append(data)
        if self._row is None:
            return
        self._row.parts.append(data)
        for part in (self._cell, self._state):
            if part is not None:
                part.append(data)


def listed_vms(client: Client, *flags: str) -> list[ListedVM]:
    response = dashboard(client, *flags)
    assert response.status_code == 200
    parser = _ListedVMs()
    parser.feed(response.content.decode())
    return parser.rows


def test_every_option_matters_in_the_inventory():
    """Each filter keeps some VMs and drops others, so an oracle case that ignores it fails."""
    everything = virsh_list(["all"], "name")
    assert set(lines(everything.stdout)) == EVERY_VM
    for option in virt.LIST_OPTIONS:
        if option == "all":
            continue
        kept = set(lines(virsh_list(["all", option] if option != "inactive" else [option], "name").stdout))
        assert kept, option
        assert kept < EVERY_VM, option


@pytest.mark.parametrize("options", OPTION_SETS, ids=lambda options: "+".join(options) or "no-options")
def test_dashboard_and_api_list_what_virsh_lists(options: tuple[str, ...], admin: Client):
    expected = virsh_list(options, "name", must_succeed=False)
    for response in (dashboard(admin, *options, json=True), api(admin, *options)):
        if expected.returncode != 0:  # virsh refuses the combination: so must the dashboard and its API
            assert response.status_code == 400, expected.stderr
            continue
        assert response.status_code == 200, response.content
        body = response.json()
        assert body["unreachable_hosts"] == []
        assert {row["host"] for row in body["domains"]} <= {HOST}
        assert sorted(row["name"] for row in body["domains"]) == sorted(lines(expected.stdout))


@pytest.mark.parametrize("outputs", [("table", "name"), ("table", "uuid")], ids="+".join)
def test_output_options_virsh_refuses_are_refused(outputs: tuple[str, ...], admin: Client):
    assert virsh_list(["all"], *outputs, must_succeed=False).returncode != 0
    assert dashboard(admin, "all", *outputs).status_code == 400
    assert dashboard(admin, "all", *outputs, json=True).status_code == 400
    assert api(admin, "all", *outputs).status_code == 400


@pytest.mark.parametrize("options", [
    (), ("all",), ("inactive", "with-managed-save"), ("state-other",), ("transient", "state-paused"),
    ("autostart", "with-snapshot"),
], ids=lambda options: "+".join(options) or "no-options")
def test_table_name_and_uuid_pages_show_what_virsh_prints(options: tuple[str, ...], admin: Client):
    names = sorted(lines(virsh_list(options, "name").stdout))
    uuids = sorted(lines(virsh_list(options, "uuid").stdout))
    both = sorted(" ".join(line.split()) for line in lines(virsh_list(options, "uuid", "name").stdout))

    table = listed_vms(admin, *options)
    assert {row.tag for row in table} <= {"tr"}
    assert sorted(row.attrs["data-name"] for row in table) == names
    assert sorted(row.cell("Name") for row in table) == names
    assert sorted(row.cell("UUID") for row in table) == uuids
    assert sorted(row.text for row in listed_vms(admin, *options, "name")) == names
    assert sorted(row.text for row in listed_vms(admin, *options, "uuid")) == uuids
    assert sorted(row.text for row in listed_vms(admin, *options, "uuid", "name")) == both


def test_table_states_and_titles_match_virsh_list_managed_save_title(admin: Client):
    """virsh list --managed-save calls a shut-off VM with a managed save image "saved"; so does the table."""
    expected = virsh_table(virsh("list --all --managed-save --title", quiet=False).stdout)
    shown = {row.attrs["data-name"]: row for row in listed_vms(admin, "all")}
    assert set(shown) == set(expected) == EVERY_VM
    assert {name: row.state for name, row in shown.items()} == {name: row["State"] for name, row in expected.items()}
    assert {name: row.cell("Title") for name, row in shown.items()} == {
        name: row["Title"] for name, row in expected.items()
    }
    assert shown["off-saved"].state == "saved"
    assert shown["off-saved-snap"].state == "saved"
    assert shown["off-plain"].state == "shut off"


def _dominfo(names: list[str]) -> dict[str, dict[str, str]]:
    output = virsh(*(f"dominfo {name}" for name in names)).stdout
    blocks: list[dict[str, str]] = []
    for line in output.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        if key == "Id":
            blocks.append({})
        blocks[-1][key] = value.strip()
    return {block["Name"]: block for block in blocks}


def _domstates(names: list[str]) -> dict[str, str]:
    output = virsh(*(f"domstate --reason {name}" for name in names)).stdout
    return dict(zip(names, lines(output), strict=True))


def test_json_columns_match_virsh_dominfo_domstate_and_snapshot_list(admin: Client):
    rows = json_rows(admin, "all")
    names = sorted(rows)
    assert set(names) == EVERY_VM
    info, states = _dominfo(names), _domstates(names)
    for name in names:
        row, facts = rows[name], info[name]
        snapshots = lines(virsh(f"snapshot-list --name {name}").stdout)
        assert {
            "state": f"{row['state']} ({row['reason']})",
            "uuid": row["uuid"],
            "vcpus": row["vcpus"],
            "memory_kib": row["memory_kib"],
            "persistent": row["persistent"],
            "autostart": row["autostart"],
            "managed_save": row["managed_save"],
            "snapshots": row["snapshots"],
        } == {
            "state": states[name],
            "uuid": facts["UUID"],
            "vcpus": int(facts["CPU(s)"]),
            "memory_kib": int(facts["Used memory"].removesuffix(" KiB")),
            "persistent": facts["Persistent"] == "yes",
            "autostart": facts["Autostart"] == "enable",
            "managed_save": facts["Managed save"] == "yes",
            "snapshots": len(snapshots),
        }, name


# virsh command -> the libvirt call it makes, for changing both sides' copies of the inventory alike.
LIFECYCLE = (
    ("suspend", "web-2", "suspend"),
    ("managedsave", "web-1", "managedSave"),
    ("start", "off-plain", "create"),
    ("shutdown", "idle", "shutdown"),
    ("destroy", "stopping", "destroy"),
    ("resume", "db-paused", "resume"),
    ("start", "off-saved", "create"),
    ("destroy", "crashed", "destroy"),
)


def test_reasons_after_lifecycle_actions_match_virsh_domstate(admin: Client):
    names = sorted(EVERY_VM)
    expected = dict(zip(
        names,
        lines(virsh(*(f"{verb} {name}" for verb, name, _call in LIFECYCLE),
                    *(f"domstate --reason {name}" for name in names)).stdout),
        strict=True,
    ))
    conn = virt.pool.get(URI).conn
    for _verb, name, call in LIFECYCLE:
        getattr(conn.lookupByName(name), call)()
    rows = json_rows(admin, "all")
    assert {name: f"{row['state']} ({row['reason']})" for name, row in rows.items()} == expected
    assert {"paused (user)", "shut off (saved)", "shut off (destroyed)", "running (unpaused)"} <= set(
        expected.values()
    )


@pytest.mark.django_db(transaction=True)
async def test_the_watchers_records_list_what_virsh_lists(admin_user: User, oracle_host: Host):
    """The list is served from what the host's watcher keeps (domains.catalog), filtered in Python:
    the same answers as virsh, for every option set, as from a listing made for the request."""
    supervisor = await start_supervisor()
    try:
        deadline = time.monotonic() + 5
        while (watcher := supervisor.watcher(oracle_host.pk)) is None or watcher.reachable is not True:
            assert time.monotonic() < deadline, "the watcher did not list its host"
            await asyncio.sleep(0.05)
        await database_sync_to_async(_every_option_set_as_virsh)(admin_user)
    finally:
        await stop_supervisor()


def _every_option_set_as_virsh(admin_user: User) -> None:
    admin = client_for(admin_user)
    for options in OPTION_SETS:
        expected = virsh_list(options, "name", must_succeed=False)
        for response in (dashboard(admin, *options, json=True), api(admin, *options)):
            if expected.returncode != 0:
                assert response.status_code == 400, options
                continue
            body = response.json()
            assert body["hosts"] == [{"host": HOST, "watched": True, "listed_at": body["hosts"][0]["listed_at"]}]
            assert sorted(row["name"] for row in body["domains"]) == sorted(lines(expected.stdout)), options
