"""Every API route x admin / operator / owning tenant / other tenant / anonymous / read-only token.

The same gate as the pages: a VM or resource a caller may not see is 404, a right it lacks on a VM it
sees is 403, an unauthenticated call 401, and a read-only token (the admin's) reads what its user reads
and is refused every write (403). Every answer that is not a success is an RFC 9457 problem document.
A route added without a row here fails `test_every_api_route_has_a_matrix_row`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import get_resolver, reverse

from accounts.models import User
from audit.models import AuditEntry
from domains.models import DefineAllowance, Grant, Host
from storage.models import UploadSession
from tests.conftest import TEST_DOMAIN_UUID
from tests.support.api import (
    FINISHED_JOB_ID,
    api_test_defaults,  # noqa: F401 - a fixture
    bearer,
    finished_migration,
)
from tests.unit.test_permissions_matrix import _route_names

ADMIN, OPERATOR, TENANT, OTHER, ANON, READ_ONLY = (
    "admin", "operator", "tenant", "other tenant", "anonymous", "read-only token")
ROLES = (ADMIN, OPERATOR, TENANT, OTHER, ANON, READ_ONLY)
USER_FIXTURES = {ADMIN: "admin_user", OPERATOR: "operator_user", TENANT: "tenant_user", OTHER: "other_tenant_user",
                 READ_ONLY: "admin_user"}
SAFE = ("GET", "HEAD", "OPTIONS")

HOST = {"host_name": "embedded"}
VM = {"host_name": "embedded", "uuid": TEST_DOMAIN_UUID}
JOB = {"job_id": str(FINISHED_JOB_ID)}
GRANT = {"grant_id": "4343"}  # the group grant of the `group_grant` fixture
ALLOWANCE = {"allowance_id": "4444"}
POOL = {"host_name": "embedded", "pool": "default-pool"}
VOLUME = {**POOL, "name": "admins.qcow2"}  # made by the `hypervisor` fixture
UPLOAD = {"session_id": "4545"}  # the admin's, made by `fixtures`
NETWORK = {"host_name": "embedded", "network": "default"}


@dataclass(frozen=True)
class Row:
    route: str
    method: str
    expected: dict[str, int]
    kwargs: dict[str, str] = field(default_factory=dict)
    query: str = ""
    data: dict[str, object] = field(default_factory=dict)
    shows: str = ""  # text a 2xx answer must contain
    audit: str = ""  # the audit row every signed-in attempt leaves (denied when refused)

    def path(self) -> str:
        return reverse(f"api:{self.route}", kwargs=self.kwargs)


def roles(*, admin: int, operator: int, tenant: int, other: int, anonymous: int = 401,
          read_only: int | None = None) -> dict[str, int]:
    return {ADMIN: admin, OPERATOR: operator, TENANT: tenant, OTHER: other, ANON: anonymous,
            READ_ONLY: admin if read_only is None else read_only}


def everyone(expected: int, anonymous: int = 401, read_only: int | None = None) -> dict[str, int]:
    return roles(admin=expected, operator=expected, tenant=expected, other=expected, anonymous=anonymous,
                 read_only=read_only)


def admin_only(expected: int, read_only: int | None = None) -> dict[str, int]:
    return roles(admin=expected, operator=404, tenant=404, other=404, read_only=read_only)


def vm_actor(allowed: int, read_only: int | None = None) -> dict[str, int]:
    return roles(admin=allowed, operator=allowed, tenant=allowed, other=404, read_only=read_only)


def hosts_seer(allowed: int) -> dict[str, int]:
    return roles(admin=allowed, operator=allowed, tenant=404, other=404)


WRITE = 403  # what a read-only token gets for any write
# The "test" VM runs, so it is not cloned: admins and operators are told so (409), a tenant first that its
# define allowance does not cover the host (400).
CLONE_RUNNING = roles(admin=409, operator=409, tenant=400, other=404, read_only=WRITE)

MATRIX: tuple[Row, ...] = (
    Row("hosts", "GET", hosts_seer(200), shows='"name":"embedded"'),
    Row("host", "GET", hosts_seer(200), kwargs=HOST, shows='"libvirt_version"'),
    Row("domains", "GET", everyone(200), query="all", shows='"domains"'),
    # Networks: for admins and operators, defined by admins (an overlapping subnet is refused in words).
    Row("networks", "GET", hosts_seer(200), kwargs=HOST, shows='"name":"default"'),
    Row("networks", "POST", admin_only(400, read_only=WRITE), kwargs=HOST,
        data={"name": "lab-nat", "subnet": "192.168.0.0/16"}),
    Row("network", "GET", hosts_seer(200), kwargs=NETWORK, shows='"leases_error"'),
    Row("network-action", "POST", roles(admin=200, operator=200, tenant=404, other=404, read_only=WRITE),
        kwargs={**NETWORK, "action": "autostart"}, shows="Network default starts with its host."),
    Row("network-action", "GET", everyone(405), kwargs={**NETWORK, "action": "autostart"}),
    # Storage: the matrix's tenants have no storage allowance, so they see no pool (their own are in
    # tests/unit/test_api_storage.py). Incomplete forms are refused field by field to those who see the pool.
    Row("pools", "GET", hosts_seer(200), kwargs=HOST, shows='"name":"default-pool"'),
    Row("pools", "POST", admin_only(400, read_only=WRITE), kwargs=HOST, data={"name": "scratch"}, shows="path"),
    Row("pool", "GET", hosts_seer(200), kwargs=POOL, shows='"name":"admins.qcow2"'),
    Row("pool-action", "POST", roles(admin=200, operator=200, tenant=404, other=404, read_only=WRITE),
        kwargs={**POOL, "action": "refresh"}, shows="Pool default-pool refreshed."),
    Row("pool-action", "GET", everyone(405), kwargs={**POOL, "action": "refresh"}),
    Row("volumes", "GET", hosts_seer(200), kwargs=POOL, shows='"name":"tina.qcow2"'),
    Row("volumes", "POST", roles(admin=400, operator=400, tenant=404, other=404, read_only=WRITE), kwargs=POOL,
        data={"name": "-bad"}),
    Row("uploads", "POST", roles(admin=400, operator=400, tenant=404, other=404, read_only=WRITE), kwargs=POOL,
        data={"name": "boot.iso"}),
    Row("uploads", "GET", everyone(405), kwargs=POOL),
    Row("volume", "GET", hosts_seer(200), kwargs=VOLUME, shows='"capacity_bytes":4294967296'),
    Row("volume", "PATCH", roles(admin=400, operator=400, tenant=404, other=404, read_only=WRITE), kwargs=VOLUME,
        data={"size_gib": "1"}, shows="volumes only grow"),
    Row("volume", "DELETE", roles(admin=200, operator=200, tenant=404, other=404, read_only=WRITE), kwargs=VOLUME,
        shows="Volume admins.qcow2 deleted."),
    # test:///default has no storage streams: the admin is told libvirt's refusal.
    Row("volume-download", "GET", admin_only(502), kwargs=VOLUME),
    Row("upload", "GET", admin_only(200), kwargs=UPLOAD, shows='"received":0'),
    # No offset given: not where the upload stands.
    Row("upload-chunk", "PUT", admin_only(409, read_only=WRITE), kwargs=UPLOAD, shows="byte 0"),
    Row("upload-chunk", "GET", everyone(405), kwargs=UPLOAD),
    Row("upload-cancel", "POST", admin_only(200, read_only=WRITE), kwargs=UPLOAD,
        shows="Upload of scratch.iso cancelled", audit="volume.upload-cancel"),
    Row("upload-cancel", "GET", everyone(405), kwargs=UPLOAD),
    # An incomplete form: refused field by field to those who may define, 404 to those who may not.
    Row("domains", "POST", roles(admin=400, operator=400, tenant=404, other=404, read_only=WRITE),
        data={"host": "embedded"}),
    Row("domains-xml", "POST", admin_only(400, read_only=WRITE), data={"host": "embedded", "xml": "<domain"}),
    Row("domains-xml", "GET", everyone(405)),
    Row("domain", "GET", vm_actor(200), kwargs=VM, shows='"name":"test"'),
    # Operating a VM is not owning it: only its owner, operators and admins delete.
    Row("domain", "DELETE", roles(admin=200, operator=200, tenant=403, other=404, read_only=WRITE), kwargs=VM,
        audit="domain.delete"),
    # The "test" VM has no guest agent channel: those who may see it are told so (409).
    Row("domain-agent", "GET", vm_actor(409), kwargs=VM, shows="guest agent"),
    Row("domain-usage", "GET", vm_actor(200), kwargs=VM, query="span=day", shows='"resolution":60'),
    Row("domain-action", "POST", vm_actor(200, read_only=WRITE), kwargs={**VM, "action": "pause"},
        shows="test paused", audit="domain.pause"),
    Row("domain-action", "GET", everyone(405), kwargs={**VM, "action": "pause"}),
    Row("snapshots", "GET", vm_actor(200), kwargs=VM),
    Row("snapshots", "POST", vm_actor(201, read_only=WRITE), kwargs=VM, data={"name": "before-upgrade"},
        shows="Snapshot before-upgrade of test created", audit="snapshot.create"),
    Row("snapshot", "DELETE", vm_actor(404, read_only=WRITE), kwargs={**VM, "name": "nosuch"},
        audit="snapshot.delete"),
    Row("snapshot", "GET", everyone(405), kwargs={**VM, "name": "nosuch"}),
    Row("snapshot-revert", "POST", vm_actor(404, read_only=WRITE), kwargs={**VM, "name": "nosuch"},
        audit="snapshot.revert"),
    Row("snapshot-revert", "GET", everyone(405), kwargs={**VM, "name": "nosuch"}),
    Row("display", "PUT", vm_actor(400, read_only=WRITE), kwargs=VM, data={"video_model": "no-such-model"},
        shows="no-such-model"),
    Row("display", "GET", everyone(405), kwargs=VM),
    Row("hardware", "GET", vm_actor(200), kwargs=VM, shows='"firmware"'),
    Row("hardware-change", "POST", vm_actor(200, read_only=WRITE), kwargs={**VM, "change": "boot-order"},
        data={"first": "hd"}, shows="test boots from hd from the next boot", audit="domain.boot-order"),
    Row("hardware-change", "GET", everyone(405), kwargs={**VM, "change": "boot-order"}),
    Row("definition", "GET", admin_only(200), kwargs=VM, shows="<domain"),
    # libvirt refuses a definition without a name: the admin is told on the xml field.
    Row("definition", "PUT", admin_only(400, read_only=WRITE), kwargs=VM, data={"xml": "<domain/>"},
        audit="domain.xml"),
    Row("clone", "POST", CLONE_RUNNING, kwargs=VM, data={"name": "copy"}, audit="domain.clone"),
    Row("clone", "GET", everyone(405), kwargs=VM),
    # No graphics device: those who may open its console are told so (409), as the console page does.
    Row("console-tickets", "POST", vm_actor(409, read_only=WRITE), kwargs=VM, audit="console.ticket"),
    Row("console-tickets", "GET", everyone(405), kwargs=VM),
    Row("domain-migrations", "POST", admin_only(400, read_only=WRITE), kwargs=VM, data={"destination": "nowhere"},
        shows="Pick the destination", audit="domain.migrate"),
    Row("domain-migrations", "GET", everyone(405), kwargs=VM),
    Row("migration", "GET", admin_only(200), kwargs=JOB, shows='"state":"succeeded"'),
    Row("migration-cancel", "POST", admin_only(409, read_only=WRITE), kwargs=JOB, shows="nothing to cancel",
        audit="domain.migrate-cancel"),
    Row("migration-cancel", "GET", everyone(405), kwargs=JOB),
    Row("audit", "GET", everyone(200), shows='"entries"'),
    Row("grants", "GET", admin_only(200), shows="team-blue"),
    Row("grants", "POST", admin_only(201, read_only=WRITE), audit="grant.save",
        data={"host": "embedded", "domain_uuid": TEST_DOMAIN_UUID, "user": "otto-other", "can_operate": True}),
    Row("grant", "DELETE", admin_only(200, read_only=WRITE), kwargs=GRANT, audit="grant.revoke"),
    Row("grant", "GET", everyone(405), kwargs=GRANT),
    Row("allowances", "GET", admin_only(200), shows='"max_vms":3'),
    Row("allowances", "POST", admin_only(201, read_only=WRITE), data={"user": "otto-other", "max_vms": 1},
        shows='"max_vms":1', audit="allowance.create"),
    Row("allowance", "GET", admin_only(200), kwargs=ALLOWANCE, shows='"group":"team-blue"'),
    Row("allowance", "PUT", admin_only(200, read_only=WRITE), kwargs=ALLOWANCE,
        data={"group": "team-blue", "max_vms": 4}, shows='"max_vms":4', audit="allowance.update"),
    Row("allowance", "DELETE", admin_only(200, read_only=WRITE), kwargs=ALLOWANCE, audit="allowance.delete"),
    # The schema and its docs page describe routes, not anybody's machines: public.
    Row("schema", "GET", everyone(200, anonymous=200), shows="openapi"),
    Row("docs", "GET", everyone(200, anonymous=200), shows="swagger-ui"),
)


@pytest.fixture
def fixtures(embedded_host: Host, admin_user: User, other_tenant_user: User, tenant_grant: Grant) -> None:
    finished_migration(actor=admin_user, source=embedded_host)
    UploadSession.objects.create(pk=int(UPLOAD["session_id"]), host=embedded_host, pool="default-pool",
                                 volume="scratch.iso", total_bytes=10, owner=admin_user)
    team = Group.objects.create(name="team-blue")  # nobody in it: it changes no role's rights
    Grant.objects.create(pk=4343, host=embedded_host, domain_uuid=TEST_DOMAIN_UUID, domain_name="test", group=team)
    DefineAllowance.objects.create(pk=int(ALLOWANCE["allowance_id"]), group=team, max_vms=3)


def matrix_client(user: User, *, read_only: bool = False) -> Client:
    client = bearer(user, name="matrix" + ("-ro" if read_only else ""), read_only=read_only)
    AuditEntry.objects.filter(action="token.create").delete()  # the matrix counts the rows of the call itself
    return client


def call(client: Client, method: str, path: str, data: dict[str, object] | None = None):
    if method == "GET":
        return client.get(path)
    return client.generic(method, path, json.dumps(data or {}), content_type="application/json")


def _cases() -> Iterator[object]:
    for row in MATRIX:
        for role in ROLES:
            yield pytest.param(row, role, id=f"{row.route} {row.method} {role}")


@pytest.mark.parametrize(("row", "role"), list(_cases()))
def test_api_matrix(row: Row, role: str, request: pytest.FixtureRequest, fixtures: None):
    if "pool" in row.kwargs:
        request.getfixturevalue("hypervisor")  # volumes in the pools, only where a row needs them (it takes time)
    user = request.getfixturevalue(USER_FIXTURES[role]) if role in USER_FIXTURES else None
    client = matrix_client(user, read_only=role == READ_ONLY) if user is not None else Client()
    path = row.path() + (f"?{row.query}" if row.query else "")
    response = call(client, row.method, path, row.data)
    expected = row.expected[role]
    body = response.content.decode()

    assert response.status_code == expected, body[:500]
    if expected >= 400:
        assert response["Content-Type"] == "application/problem+json", body[:200]
        problem = response.json()
        assert (problem["status"], problem["type"]) == (expected, "about:blank")
        assert problem["title"] and problem["detail"]
    if expected == 401:
        assert response["WWW-Authenticate"].startswith("Bearer")
    admin_only = row.expected[ADMIN] != 404 and row.expected[OPERATOR] == 404
    hidden = role == OTHER or (admin_only and role in (OPERATOR, TENANT))
    if expected == 404 and hidden:
        for value in row.kwargs.values():  # nothing in a 404 confirms that the host or the VM exists
            assert value not in body
    if expected < 300 and row.shows:
        assert row.shows in body
    if row.audit and user is not None:
        entries = list(AuditEntry.objects.filter(actor=user).values_list("action", "result", "token_name"))
        assert len(entries) == 1, entries
        action, result, token_name = entries[0]
        refused = hidden or expected == 403
        assert action == ("api.refused" if role == READ_ONLY else row.audit)
        assert (result == AuditEntry.Result.DENIED) == refused, entries
        assert token_name == ("matrix-ro" if role == READ_ONLY else "matrix")


def test_every_api_route_has_a_matrix_row():
    routes = {name.removeprefix("api:") for name in _route_names(get_resolver().url_patterns, unlisted=set())
              if name.startswith("api:")}
    assert {"domains", "domain", "schema"} <= routes  # the walk finds them
    assert routes == {row.route for row in MATRIX}


def test_every_write_route_refuses_get_in_the_matrix():
    """A route that only writes must have a GET row that answers 405 (a GET never changes anything)."""
    for route in {row.route for row in MATRIX if row.method not in SAFE}:
        assert any(row.route == route and row.method == "GET" for row in MATRIX), route


def test_the_session_works_with_csrf(admin_user: User, embedded_host: Host):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    assert client.get(reverse("api:domains"), {"all": ""}).status_code == 200
    refused = client.post(reverse("api:domain-action", kwargs={**VM, "action": "pause"}))
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["detail"]
    client.get("/accounts/tokens/")  # any page sets the CSRF cookie
    allowed = client.post(reverse("api:domain-action", kwargs={**VM, "action": "pause"}),
                          headers={"X-CSRFToken": client.cookies["csrftoken"].value})
    assert allowed.status_code == 200
    assert AuditEntry.objects.get(action="domain.pause").token_name == ""
