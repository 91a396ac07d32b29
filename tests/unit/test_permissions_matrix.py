"""Every endpoint x admin / operator / owning tenant / other tenant / anonymous (NetBox, Nova policies).

A VM or page a user may not see answers 404, never 403; anonymous users are sent to the login
page; POST-only endpoints answer 405 to GET. An endpoint added without a row here fails
`test_every_route_has_a_matrix_row`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import quote

import libvirt
import pytest
from django.contrib.auth.models import Group
from django.core.cache import cache
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from accounts.models import User
from audit.models import AuditEntry
from domains.models import DefineAllowance, Grant, Host, MigrationJob
from storage.models import UploadSession
from tests.conftest import TEST_DOMAIN_UUID, client_for
from tests.support.streaming import read_all

ADMIN, OPERATOR, TENANT, OTHER, ANON = "admin", "operator", "tenant", "other tenant", "anonymous"
ROLES = (ADMIN, OPERATOR, TENANT, OTHER, ANON)
USER_FIXTURES = {ADMIN: "admin_user", OPERATOR: "operator_user", TENANT: "tenant_user", OTHER: "other_tenant_user"}

LOGIN = "login"  # a 302 to the login page, with ?next= the requested path


@dataclass(frozen=True)
class Redirect:
    to: str


Expected = int | str | Redirect

HOST = {"host_name": "embedded"}
VM = {"host_name": "embedded", "uuid": TEST_DOMAIN_UUID}


@dataclass(frozen=True)
class Row:
    route: str  # "namespace:name", or the pattern text of an unnamed route ("" is the site root)
    method: str
    expected: dict[str, Expected]
    kwargs: dict[str, str] = field(default_factory=dict)
    query: str = ""
    data: dict[str, str] = field(default_factory=dict)
    shows: str = ""  # text a 200 answer must contain
    # For actions: the audit row every attempt leaves. A refused one ends "denied"; an allowed one
    # reaches the hypervisor and ends "succeeded" or "failed" (whether it works is tested elsewhere).
    audit: str = ""

    def path(self) -> str:
        return reverse(self.route, kwargs=self.kwargs) if ":" in self.route else "/" + self.route


def roles(*, admin: Expected, operator: Expected, tenant: Expected, other: Expected,
          anonymous: Expected = LOGIN) -> dict[str, Expected]:
    return {ADMIN: admin, OPERATOR: operator, TENANT: tenant, OTHER: other, ANON: anonymous}


def everyone(expected: Expected, anonymous: Expected = LOGIN) -> dict[str, Expected]:
    return roles(admin=expected, operator=expected, tenant=expected, other=expected, anonymous=anonymous)


def admin_only(expected: Expected) -> dict[str, Expected]:
    return roles(admin=expected, operator=404, tenant=404, other=404)


def host_staff(allowed: Expected) -> dict[str, Expected]:
    """Admins and operators (access.sees_hosts); tenants are told nothing exists."""
    return roles(admin=allowed, operator=allowed, tenant=404, other=404)


def vm_actor(allowed: Expected) -> dict[str, Expected]:
    """Admins, operators and the owning tenant (view, operate, console) may; the other tenant gets 404."""
    return roles(admin=allowed, operator=allowed, tenant=allowed, other=404)


VM_PAGE = f"/domains/embedded/{TEST_DOMAIN_UUID}/"
JOB = {"job_id": "4242"}  # a finished migration of the "test" VM (see the migration_job fixture)
JOB_PAGE = "/migrations/4242/"
NETWORK = {"host_name": "embedded", "name": "default"}  # test:///default's NAT network
NETWORK_PAGE = "/hosts/embedded/networks/default/"
NEW_HOST = {"name": "lab2", "uri": "test:///default", "enabled": "on"}
EDITED_HOST = {"uri": "test:///default"}  # unticks "enabled"; the name field is read-only
POOL = {"host_name": "embedded", "pool": "default-pool"}
POOL_PAGE = "/hosts/embedded/pools/default-pool/"
VOLUME = {**POOL, "name": "admins.qcow2"}  # made by the hypervisor fixture (tests/unit/conftest.py)
VOLUME_PAGE = POOL_PAGE + "volumes/admins.qcow2/"
UPLOAD = {"session_id": "4343"}  # the admin's, half done (see the upload_session fixture)
PERSON = {"user_id": "4244"}  # a tenant the people pages change (see the people fixture)
GROUP = {"group_id": "4245"}
GRANT = {"grant_id": "4246"}
ALLOWANCE = {"allowance_id": "4247"}
ALLOWED = {"user": "4244", "max_vms": "1", "max_vcpus": "1", "max_memory_mib": "512", "max_storage_gib": "1"}

MATRIX: tuple[Row, ...] = (
    Row("", "GET", everyone(Redirect("/domains/"), anonymous=Redirect("/domains/"))),
    Row("accounts:login", "GET", everyone(Redirect("/domains/"), anonymous=200), shows="Log in"),
    Row("accounts:logout", "POST", everyone(Redirect("/accounts/login/"), anonymous=Redirect("/accounts/login/"))),
    Row("accounts:logout", "GET", everyone(405, anonymous=405)),
    Row("accounts:language", "POST", everyone(Redirect("/"), anonymous=Redirect("/")), data={"language": "vi"}),
    Row("accounts:language", "GET", everyone(405, anonymous=405)),
    Row("accounts:tokens", "GET", everyone(200), shows="API tokens"),
    Row("accounts:tokens", "POST", everyone(200), data={"name": "matrix"}, shows="vmp_", audit="token.create"),
    # Nobody's token 4243: revoking it is a 404 for everybody, as another user's token would be.
    Row("accounts:token-revoke", "POST", everyone(404), kwargs={"token_id": "4243"}, audit="token.revoke"),
    Row("accounts:token-revoke", "GET", everyone(405), kwargs={"token_id": "4243"}),
    # Sign-in: with no password accepted in this session there is no code to ask for; single sign-on is not
    # configured in the unit tests (tests/e2e/test_sign_in_oidc.py runs it).
    Row("accounts:login-code", "GET", everyone(200, anonymous=200), shows="No sign-in is waiting for a code"),
    Row("accounts:login-code", "POST", everyone(200, anonymous=200), data={"code": "123456"},
        shows="No sign-in is waiting for a code"),
    Row("accounts:oidc-login", "GET", everyone(404, anonymous=404)),
    Row("accounts:oidc-callback", "GET", everyone(404, anonymous=404)),
    Row("accounts:two-factor", "GET", everyone(200), shows="Two-factor sign-in is off"),
    Row("accounts:two-factor", "POST", everyone(Redirect("/accounts/two-factor/")), data={"start": "1"},
        audit="otp.enrol"),
    Row("domains:list", "GET", everyone(200), query="all", shows="Virtual machines"),
    Row("domains:detail", "GET", roles(admin=200, operator=200, tenant=200, other=404), kwargs=VM,
        shows="<h1>test <small>on "),
    Row("domains:new", "GET", roles(admin=200, operator=200, tenant=404, other=404), shows="New virtual machine"),
    # An incomplete form: refused as 400 to those who may define, 404 to those who may not.
    Row("domains:new", "POST", roles(admin=400, operator=400, tenant=404, other=404), data={"host": "embedded"}),
    Row("domains:new-xml", "GET", admin_only(200), shows="Define from XML"),
    Row("domains:new-xml", "POST", admin_only(400), data={"host": "embedded", "xml": "<domain"}),
    # Bulk actions answer each VM's outcome: the other tenant's is "refused", audited as denied and naming
    # nothing it may not see (tests/unit/test_bulk_actions.py).
    Row("domains:bulk", "POST", everyone(200), data={"action": "pause", "vm": f"embedded/{TEST_DOMAIN_UUID}"},
        shows='id="bulk-results"'),
    Row("domains:bulk", "GET", everyone(405)),
    Row("domains:display", "GET", vm_actor(200), kwargs=VM, shows="Display of test"),
    Row("domains:display", "POST", vm_actor(400), kwargs=VM, data={"video_model": "no-such-model"}),
    Row("domains:hardware", "GET", vm_actor(200), kwargs=VM, shows="Hardware of test"),
    Row("domains:hardware", "POST", vm_actor(400), kwargs=VM, data={"change": "vcpus", "vcpus-vcpus": "0"}),
    Row("domains:hardware", "POST", vm_actor(Redirect(f"{VM_PAGE}hardware/")), kwargs=VM,
        data={"change": "boot-order", "boot-order-first": "hd"}, audit="domain.boot-order"),
    Row("domains:definition", "GET", admin_only(200), kwargs=VM, shows="XML of test"),
    Row("domains:definition", "POST", admin_only(200), kwargs=VM, data={"xml": "<domain/>", "preview": ""}),
    # The "test" VM runs: those who may clone it are told to shut it off.
    Row("domains:clone", "GET", vm_actor(200), kwargs=VM, shows="Clone test"),
    Row("domains:clone", "POST", vm_actor(400), kwargs=VM, data={"name": "copy"}, audit="domain.clone"),
    Row("domains:agent", "GET", vm_actor(200), kwargs=VM, shows="Guest agent"),
    Row("domains:usage", "GET", vm_actor(200), kwargs=VM, query="span=day", shows='"resolution": 60'),
    Row("domains:action", "POST", vm_actor(Redirect(VM_PAGE)), kwargs=VM, data={"action": "pause"},
        audit="domain.pause"),
    Row("domains:action", "GET", everyone(405), kwargs=VM),
    # Operating a VM is not owning it: only its owner (a grant's owner right), operators and admins delete.
    Row("domains:delete", "POST", roles(admin=Redirect("/domains/?all"), operator=Redirect("/domains/?all"),
                                        tenant=403, other=404), kwargs=VM, audit="domain.delete"),
    Row("domains:delete", "GET", everyone(405), kwargs=VM),
    Row("domains:snapshot-create", "POST", vm_actor(Redirect(VM_PAGE)), kwargs=VM, data={"name": "before-upgrade"},
        audit="snapshot.create"),
    Row("domains:snapshot-create", "GET", everyone(405), kwargs=VM),
    Row("domains:snapshot-action", "POST", vm_actor(Redirect(VM_PAGE)), kwargs={**VM, "name": "nosuch"},
        data={"action": "revert"}, audit="snapshot.revert"),
    Row("domains:snapshot-action", "GET", everyone(405), kwargs={**VM, "name": "nosuch"}),
    # The "test" VM has no graphics device: those who may open its console are told so (409).
    Row("consoles:page", "GET", vm_actor(409), kwargs=VM),
    Row("consoles:tickets", "POST", vm_actor(409), kwargs=VM, audit="console.ticket"),
    Row("consoles:tickets", "GET", everyone(405), kwargs=VM),
    # Nor a serial port or console device: its serial console cannot open either (409).
    Row("consoles:serial", "GET", vm_actor(409), kwargs=VM),
    Row("consoles:serial-tickets", "POST", vm_actor(409), kwargs=VM, audit="console.ticket"),
    Row("consoles:serial-tickets", "GET", everyone(405), kwargs=VM),
    Row("domains:hosts", "GET", admin_only(200), shows="Register a host"),
    Row("domains:hosts", "POST", admin_only(Redirect("/hosts/")), data=NEW_HOST),
    # The host page and its charts: admins and operators (who see every VM); a tenant is told nothing exists.
    Row("domains:host", "GET", roles(admin=200, operator=200, tenant=404, other=404), kwargs=HOST,
        shows="<h1>embedded <small>host</small></h1>"),
    Row("domains:host-usage", "GET", roles(admin=200, operator=200, tenant=404, other=404), kwargs=HOST,
        query="span=day", shows='"resolution": 60'),
    Row("domains:host-edit", "GET", admin_only(200), kwargs=HOST, shows="Edit host embedded"),
    Row("domains:host-edit", "POST", admin_only(Redirect("/hosts/")), kwargs=HOST, data=EDITED_HOST),
    Row("domains:host-delete", "POST", admin_only(Redirect("/hosts/")), kwargs=HOST,
        audit="host.delete"),
    Row("domains:host-delete", "GET", everyone(405), kwargs=HOST),
    Row("domains:host-test", "POST", admin_only(200), kwargs=HOST, shows="libvirt ",
        audit="host.test"),
    Row("domains:host-test", "GET", everyone(405), kwargs=HOST),
    Row("audit:list", "GET", everyone(200), shows="Audit log"),
    Row("audit:export", "GET", everyone(200), query="result=denied", shows="When,Who,API token,Action"),
    # Migration is for admins only; everybody else is told nothing exists.
    Row("domains:migrate", "GET", admin_only(200), kwargs=VM, shows="Migrate test"),
    Row("domains:migrate", "POST", admin_only(400), kwargs=VM, data={"destination": "nowhere"},
        audit="domain.migrate"),
    Row("domains:migration", "GET", admin_only(200), kwargs=JOB, shows="Migration of test"),
    Row("domains:migration-action", "POST", admin_only(Redirect(JOB_PAGE)), kwargs=JOB, data={"action": "cancel"},
        audit="domain.migrate-cancel"),
    Row("domains:migration-action", "GET", everyone(405), kwargs=JOB),
    # A host's networks (issue 15): admins and operators see and start/stop them; only admins define; tenants 404.
    Row("networks:list", "GET", roles(admin=200, operator=200, tenant=404, other=404), kwargs=HOST,
        shows='data-network="default"'),
    # A NAT network on default's subnet: refused beside its field (400) to an admin, 404 to everybody else.
    Row("networks:list", "POST", admin_only(400), kwargs=HOST, data={"name": "lab-nat", "subnet": "192.168.122.0/24"},
        audit="network.define"),
    Row("networks:detail", "GET", roles(admin=200, operator=200, tenant=404, other=404), kwargs=NETWORK,
        shows="<h1>default <small>network"),
    Row("networks:action", "POST", roles(admin=Redirect(NETWORK_PAGE), operator=Redirect(NETWORK_PAGE), tenant=404,
                                         other=404), kwargs=NETWORK, data={"action": "autostart"},
        audit="network.autostart"),
    Row("networks:action", "GET", everyone(405), kwargs=NETWORK),
    # Prometheus' bearer token, not a session: every role without it is refused alike (test_metrics.py).
    Row("metrics", "GET", everyone(401, anonymous=401)),
    # Storage: admins and operators run every pool; these tenants have no pool (tests/unit/test_storage_pages.py
    # has tenants with an allowance and shared images). Defining a pool and downloading a volume: admins only.
    Row("storage:pools", "GET", host_staff(200), kwargs=HOST, shows="Storage pools <small>on embedded"),
    Row("storage:pools", "POST", admin_only(Redirect("/hosts/embedded/pools/matrix-pool/")), kwargs=HOST,
        data={"name": "matrix-pool", "path": "/matrix-pool"}, audit="pool.define"),
    Row("storage:pool", "GET", host_staff(200), kwargs=POOL, shows="Pool default-pool"),
    Row("storage:pool", "POST", host_staff(Redirect(POOL_PAGE)), kwargs=POOL,
        data={"name": "matrix.qcow2", "size_gib": "1", "format": "qcow2"}, audit="volume.create"),
    Row("storage:pool-action", "POST", host_staff(Redirect(POOL_PAGE)), kwargs=POOL, data={"action": "refresh"},
        audit="pool.refresh"),
    Row("storage:pool-action", "GET", everyone(405), kwargs=POOL),
    Row("storage:uploads", "POST", host_staff(201), kwargs=POOL, data={"name": "matrix.iso", "size_bytes": "1024"},
        audit="volume.upload"),
    Row("storage:uploads", "GET", everyone(405), kwargs=POOL),
    Row("storage:volume", "GET", host_staff(200), kwargs=VOLUME, shows="Volume admins.qcow2"),
    # test:///default cannot resize: libvirt's refusal on the form (400).
    Row("storage:volume", "POST", host_staff(400), kwargs=VOLUME, data={"size_gib": "8"}, audit="volume.resize"),
    Row("storage:volume-delete", "POST", host_staff(Redirect(POOL_PAGE)), kwargs=VOLUME, audit="volume.delete"),
    Row("storage:volume-delete", "GET", everyone(405), kwargs=VOLUME),
    # Nor download: back to the volume's page with libvirt's reason.
    Row("storage:volume-download", "GET", admin_only(Redirect(VOLUME_PAGE)), kwargs=VOLUME,
        audit="volume.download"),
    # An upload is its starter's alone (the admin's, in the upload_session fixture).
    Row("storage:upload", "GET", admin_only(200), kwargs=UPLOAD, shows='"received": 0'),
    Row("storage:upload-chunk", "POST", admin_only(409), kwargs=UPLOAD),  # without its offset
    Row("storage:upload-chunk", "GET", everyone(405), kwargs=UPLOAD),
    Row("storage:upload-cancel", "POST", admin_only(200), kwargs=UPLOAD, audit="volume.upload-cancel"),
    Row("storage:upload-cancel", "GET", everyone(405), kwargs=UPLOAD),
    # Users, groups, grants and define allowances (people/): admins only, everybody else is told nothing exists.
    Row("people:users", "GET", admin_only(200), shows="Create a user"),
    # A common password: the service refuses it beside its field.
    Row("people:users", "POST", admin_only(400), data={"username": "matrix", "password": "password", "role": "tenant"},
        audit="user.create"),
    Row("people:user", "GET", admin_only(200), kwargs=PERSON, shows="Role, groups and sign-in"),
    Row("people:user", "POST", admin_only(Redirect("/people/users/4244/")), kwargs=PERSON,
        data={"role": "tenant", "is_active": "on"}, audit="user.update"),
    Row("people:groups", "GET", admin_only(200), shows="Create a group"),
    Row("people:groups", "POST", admin_only(Redirect("/people/groups/4246/")), data={"name": "matrix"},  # the next id
        audit="group.create"),
    Row("people:group", "GET", admin_only(200), kwargs=GROUP, shows="Name and members"),
    Row("people:group", "POST", admin_only(Redirect("/people/groups/4245/")), kwargs=GROUP, data={"name": "lab"},
        audit="group.update"),
    Row("people:grants", "GET", admin_only(200), shows="Share a virtual machine"),
    Row("people:grants", "POST", admin_only(Redirect("/people/grants/")),
        data={"vm": f"embedded/{TEST_DOMAIN_UUID}", "user": "4244"}, audit="grant.save"),
    Row("people:grant-revoke", "POST", admin_only(Redirect("/people/grants/")), kwargs=GRANT, audit="grant.revoke"),
    Row("people:grant-revoke", "GET", everyone(405), kwargs=GRANT),
    Row("people:share", "GET", admin_only(200), kwargs=VM, shows="Share test"),
    Row("people:share", "POST", admin_only(Redirect(f"{VM_PAGE}#sharing")), kwargs=VM, data={"user": "4244"},
        audit="grant.save"),
    Row("people:allowances", "GET", admin_only(200), shows="Add an allowance"),
    Row("people:allowances", "POST", admin_only(Redirect("/people/allowances/")), data=ALLOWED,
        audit="allowance.create"),
    Row("people:allowance", "GET", admin_only(200), kwargs=ALLOWANCE, shows="Define allowance of"),
    Row("people:allowance", "POST", admin_only(Redirect("/people/allowances/")), kwargs=ALLOWANCE, data=ALLOWED,
        audit="allowance.update"),
    Row("people:allowance-delete", "POST", admin_only(Redirect("/people/allowances/")), kwargs=ALLOWANCE,
        audit="allowance.delete"),
    Row("people:allowance-delete", "GET", everyone(405), kwargs=ALLOWANCE),
)


@pytest.fixture(autouse=True)
def fast_password_hashing(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def metrics_token(settings) -> None:
    settings.METRICS_TOKEN = "matrix-metrics-token"  # configured: without one /metrics is a 404 for everybody


@pytest.fixture
def migration_job(embedded_host: Host, admin_user: User) -> MigrationJob:
    return MigrationJob.objects.create(
        pk=4242, actor=admin_user, actor_name=admin_user.username, domain_uuid=TEST_DOMAIN_UUID, domain_name="test",
        source=embedded_host, source_name="embedded", destination=None, destination_name="gone", live=True,
        state=MigrationJob.State.SUCCEEDED)


@pytest.fixture
def upload_session(hypervisor: libvirt.virConnect, embedded_host: Host, admin_user: User) -> UploadSession:
    return UploadSession.objects.create(pk=4343, host=embedded_host, pool="default-pool", volume="admins.qcow2",
                                        total_bytes=4096, owner=admin_user)


@pytest.fixture
def people(embedded_host: Host) -> None:
    """What the people pages' rows change: a user, a group, a grant to the group and an allowance."""
    person = User.objects.create_user(pk=4244, username="pat-person", role=User.Role.TENANT)
    group = Group.objects.create(pk=4245, name="lab")
    Grant.objects.create(pk=4246, host=embedded_host, domain_uuid=TEST_DOMAIN_UUID, domain_name="test", group=group)
    DefineAllowance.objects.create(pk=4247, user=person)


@pytest.fixture(autouse=True)
def empty_cache() -> None:
    cache.clear()  # per-VM action locks and login counters live there


def _cases() -> Iterator[object]:
    for row in MATRIX:
        for role in ROLES:
            yield pytest.param(row, role, id=f"{row.route or '/'} {row.method} {role}")


def _hosts() -> list[tuple[str, str, bool]]:
    return list(Host.objects.values_list("name", "uri", "enabled"))


@pytest.mark.parametrize(("row", "role"), list(_cases()))
def test_matrix(row: Row, role: str, request: pytest.FixtureRequest, tenant_grant: Grant,
                migration_job: MigrationJob, upload_session: UploadSession, people: None):
    user = request.getfixturevalue(USER_FIXTURES[role]) if role in USER_FIXTURES else None
    hosts_before = _hosts()
    path = row.path()
    client = client_for(user)
    if row.method == "GET":
        response = client.get(f"{path}?{row.query}" if row.query else path)
    else:
        response = client.post(path, row.data)
    expected = row.expected[role]
    body = (read_all(response.streaming_content) if response.streaming else response.content).decode()  # type: ignore[attr-defined]

    if expected == LOGIN:
        full = f"{path}?{row.query}" if row.query else path
        assert response.status_code == 302
        assert response["Location"] == f"/accounts/login/?next={quote(full, safe='/')}"
    elif isinstance(expected, Redirect):
        assert response.status_code == 302
        assert response["Location"] == expected.to
    else:
        assert response.status_code == expected, body[:500]
        if expected == 200 and row.shows:
            assert row.shows in body
        if expected == 404:
            # Nothing in a 404 confirms that the host or the VM exists.
            for value in row.kwargs.values():
                assert value not in body
    if role != ADMIN:
        assert _hosts() == hosts_before, "only an admin changes hosts"
    if row.audit and user is not None:
        entries = list(AuditEntry.objects.filter(actor=user).values_list("action", "result"))
        assert len(entries) == 1, entries
        assert entries[0][0] == row.audit
        if expected in (403, 404):
            assert entries[0][1] == AuditEntry.Result.DENIED
        else:
            assert entries[0][1] in (AuditEntry.Result.SUCCEEDED, AuditEntry.Result.FAILED)


# Every namespace but Django's admin site, which keys on is_staff (see test_accounts.py), and the API, whose
# routes have their own matrix with read-only tokens (test_api_permissions.py).
UNLISTED_NAMESPACES = {"admin", "api"}


def _route_names(patterns: list[URLPattern | URLResolver], namespace: str = "",
                 unlisted: set[str] = UNLISTED_NAMESPACES) -> Iterator[str]:
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            if pattern.namespace in unlisted:
                continue
            inner = ":".join(part for part in (namespace, pattern.namespace or "") if part)
            yield from _route_names(pattern.url_patterns, inner, unlisted)
        elif pattern.name:
            yield f"{namespace}:{pattern.name}" if namespace else pattern.name
        else:
            yield str(pattern.pattern)


def test_every_route_has_a_matrix_row():
    routes = set(_route_names(get_resolver().url_patterns))
    assert {"domains:detail", "domains:host-delete", "accounts:login"} <= routes  # the walk finds them
    missing = routes - {row.route for row in MATRIX}
    assert not missing, f"add rows to MATRIX for {sorted(missing)}"


def test_every_matrix_row_is_a_live_route():
    routes = set(_route_names(get_resolver().url_patterns))
    assert {row.route for row in MATRIX} <= routes


def test_every_post_only_route_refuses_get_in_the_matrix():
    """An action (POST without a GET page) must have a GET row that answers 405."""
    for route in {row.route for row in MATRIX if row.method == "POST"}:
        gets = [row for row in MATRIX if row.route == route and row.method == "GET"]
        assert gets, f"{route} has no GET row"
        # Either a page that also takes a form (200), or an action that refuses GET (405).
        assert gets[0].expected[ADMIN] in (200, 405), route


def test_another_tenants_vm_is_the_same_404_as_a_vm_that_does_not_exist(other_tenant_user: User,
                                                                        tenant_grant: Grant):
    client = client_for(other_tenant_user)
    granted = client.get(reverse("domains:detail", kwargs=VM))
    missing = client.get(reverse("domains:detail", kwargs={**VM, "uuid": "00000000-0000-0000-0000-000000000001"}))
    assert granted.status_code == missing.status_code == 404
    # The 404 page is in the site's layout, whose CSRF token Django masks afresh for every response.
    assert _without_csrf_token(granted.content) == _without_csrf_token(missing.content)


def _without_csrf_token(content: bytes) -> bytes:
    return re.sub(rb'("X-CSRFToken": "|name="csrfmiddlewaretoken" value=")[^"]+', rb"\1", content)


def _listed_uuids(user: User) -> set[str]:
    response = client_for(user).get("/domains/", {"all": "", "format": "json"})
    assert response.status_code == 200
    return {row["uuid"] for row in response.json()["domains"]}


def test_the_owning_tenant_lists_exactly_its_granted_vm(tenant_user: User, tenant_grant: Grant):
    assert _listed_uuids(tenant_user) == {TEST_DOMAIN_UUID}


def test_another_tenant_does_not_list_the_granted_vm(other_tenant_user: User, tenant_grant: Grant):
    assert TEST_DOMAIN_UUID not in _listed_uuids(other_tenant_user)
    page = client_for(other_tenant_user).get("/domains/", {"all": ""})
    assert TEST_DOMAIN_UUID not in page.content.decode()
    assert "No virtual machine matches" in page.content.decode()


def test_operator_and_admin_list_every_vm(admin_user: User, operator_user: User, embedded_host: Host):
    assert TEST_DOMAIN_UUID in _listed_uuids(admin_user)
    assert TEST_DOMAIN_UUID in _listed_uuids(operator_user)


def test_a_grant_through_a_group_shows_the_vm_to_its_members(other_tenant_user: User, embedded_host: Host):
    group = Group.objects.create(name="team-blue")
    Grant.objects.create(host=embedded_host, domain_uuid=TEST_DOMAIN_UUID, group=group)
    assert TEST_DOMAIN_UUID not in _listed_uuids(other_tenant_user)

    other_tenant_user.groups.add(group)
    assert _listed_uuids(other_tenant_user) == {TEST_DOMAIN_UUID}
    detail = client_for(other_tenant_user).get(reverse("domains:detail", kwargs=VM))
    assert detail.status_code == 200


def test_a_grant_on_a_disabled_host_hides_the_vm(tenant_user: User, tenant_grant: Grant):
    Host.objects.filter(pk=tenant_grant.host_id).update(enabled=False)
    assert _listed_uuids(tenant_user) == set()
    assert client_for(tenant_user).get(reverse("domains:detail", kwargs=VM)).status_code == 404


def test_a_view_only_grant_still_shows_the_vm(other_tenant_user: User, embedded_host: Host):
    Grant.objects.create(host=embedded_host, domain_uuid=TEST_DOMAIN_UUID, user=other_tenant_user)
    assert _listed_uuids(other_tenant_user) == {TEST_DOMAIN_UUID}


def test_a_view_only_tenant_may_look_but_not_act_or_open_the_console(other_tenant_user: User,
                                                                      embedded_host: Host):
    Grant.objects.create(host=embedded_host, domain_uuid=TEST_DOMAIN_UUID, user=other_tenant_user)
    client = client_for(other_tenant_user)
    assert client.get(VM_PAGE).status_code == 200

    refused = client.post(f"{VM_PAGE}action/", {"action": "pause"})
    assert refused.status_code == 403  # the VM is visible to this tenant, so a 404 would hide nothing
    [(action, result)] = AuditEntry.objects.filter(actor=other_tenant_user).values_list("action", "result")
    assert (action, result) == ("domain.pause", "denied")
    [row] = client.get("/domains/", {"all": "", "format": "json"}).json()["domains"]
    assert row["state"] == "running"

    assert client.get(f"/consoles/embedded/{TEST_DOMAIN_UUID}/").status_code == 404
    assert client.post(f"/consoles/embedded/{TEST_DOMAIN_UUID}/tickets/").status_code == 404


@pytest.mark.parametrize("route", ["domains:host-delete", "domains:host-test"])
@pytest.mark.parametrize("role", [OPERATOR, TENANT])
def test_a_denied_host_action_is_audited_as_denied(route: str, role: str, request: pytest.FixtureRequest,
                                                  embedded_host: Host):
    user: User = request.getfixturevalue(USER_FIXTURES[role])
    response = client_for(user).post(reverse(route, kwargs=HOST), REMOTE_ADDR="127.0.0.7")
    assert response.status_code == 404
    assert Host.objects.filter(name="embedded").exists()
    entry = AuditEntry.objects.get(actor=user)
    assert (entry.action, entry.result, entry.host_name) == (
        route.replace("domains:host-", "host."), AuditEntry.Result.DENIED, "embedded")
    assert entry.client_addr == "127.0.0.7"
    assert entry.finished_at is not None


def test_post_without_a_csrf_token_is_refused(admin_user: User, embedded_host: Host):
    client = client_for(admin_user)
    client.handler.enforce_csrf_checks = True
    response = client.post(reverse("domains:host-delete", kwargs=HOST))
    assert response.status_code == 403
    assert Host.objects.filter(name="embedded").exists()


# SECURITY.md wants a row for every denied action, also those refused by a view before any service.
@pytest.mark.parametrize(
    ("role", "path", "data"),
    [
        pytest.param(OPERATOR, "/hosts/", NEW_HOST, id="host register"),
        pytest.param(OPERATOR, "/hosts/embedded/edit/", EDITED_HOST, id="host edit"),
        pytest.param(OPERATOR, "/domains/new/xml/", {"host": "embedded", "xml": "<domain/>"}, id="define from xml"),
        pytest.param(TENANT, "/domains/new/", {"host": "embedded", "name": "mine"}, id="define"),
        pytest.param(OTHER, f"{VM_PAGE}display/", {"video_model": "vga"}, id="display of another tenant's VM"),
        pytest.param(OTHER, f"{VM_PAGE}action/", {"action": "pause"}, id="action on another tenant's VM"),
        pytest.param(OTHER, f"{VM_PAGE}hardware/", {"change": "vcpus", "vcpus-vcpus": "1"},
                     id="hardware of another tenant's VM"),
        pytest.param(OTHER, f"{VM_PAGE}clone/", {"name": "copy"}, id="clone of another tenant's VM"),
        pytest.param(OPERATOR, f"{VM_PAGE}hardware/xml/", {"xml": "<domain/>", "save": ""}, id="XML editor"),
    ],
)
def test_every_refused_post_leaves_a_denied_audit_row(role: str, path: str, data: dict[str, str],
                                                     request: pytest.FixtureRequest, tenant_grant: Grant):
    user: User = request.getfixturevalue(USER_FIXTURES[role])
    assert client_for(user).post(path, data).status_code == 404
    assert list(AuditEntry.objects.filter(actor=user).values_list("result", flat=True)) == ["denied"]


# --- Objects a request names inside a VM or a define: volumes and pools (SECURITY.md, "Actions"). ---
# Each row: what the request names, the data it posts, and the volume that must survive it. The
# owning tenant owns tina.qcow2 and the VM "tinas-vm" booting it; the other tenant owns otto.qcow2.

FOREIGN_STORAGE = {
    "delete: another tenant's volume attached to the VM": ("delete", {"disk": "vdb"}, "otto.qcow2"),
    "delete: another VM's volume attached to the VM": ("delete", {"disk": "vdc"}, "admins.qcow2"),
    "delete: a shared image attached to the VM": ("delete", {"disk": "sda"}, "debian.iso"),
    "delete: a volume by its path": ("delete", {"volume": "/default-pool/otto.qcow2"}, "otto.qcow2"),
    "define: boot another tenant's volume": ("define", {"boot_kind": "volume", "volume": "default-pool/otto.qcow2"},
                                             "otto.qcow2"),
    "define: boot a volume nobody recorded": ("define", {"boot_kind": "volume", "volume": "default-pool/admins.qcow2"},
                                              "admins.qcow2"),
    "define: install from another tenant's volume": ("define", {"boot_kind": "iso",
                                                                "volume": "default-pool/otto.qcow2"}, "otto.qcow2"),
    "define: a new volume in a pool not allowed": ("define", {"boot_kind": "new-volume", "pool": "images",
                                                              "size_gib": "1"}, "debian.iso"),
}


@pytest.mark.parametrize("role", [TENANT, OTHER])
@pytest.mark.parametrize("case", list(FOREIGN_STORAGE))
def test_a_request_naming_storage_that_is_not_the_users_is_refused(case: str, role: str, storage: None,
                                                                   hypervisor: libvirt.virConnect,
                                                                   embedded_host: Host, request: pytest.FixtureRequest):
    user: User = request.getfixturevalue(USER_FIXTURES[TENANT])
    devices = "".join(
        f"<disk type='file' device='{device}'><source file='{path}'/><target dev='{target}'/>{extra}</disk>"
        for target, device, path, extra in (("vda", "disk", "/default-pool/tina.qcow2", ""),
                                            ("vdb", "disk", "/default-pool/otto.qcow2", ""),
                                            ("vdc", "disk", "/default-pool/admins.qcow2", ""),
                                            ("sda", "cdrom", "/images/debian.iso", "<readonly/>")))
    uuid = hypervisor.defineXML(f"<domain type='test'><name>tinas-vm</name><memory>65536</memory><os><type>hvm</type>"
                                f"</os><devices>{devices}</devices></domain>").UUIDString()
    hypervisor.defineXML("<domain type='test'><name>admins-vm</name><memory>65536</memory><os><type>hvm</type></os>"
                         "<devices><disk type='file' device='disk'><source file='/default-pool/admins.qcow2'/>"
                         "<target dev='vda'/></disk></devices></domain>")
    Grant.objects.create(host=embedded_host, domain_uuid=uuid, domain_name="tinas-vm", user=user, can_operate=True,
                         owner=True)
    actor: User = request.getfixturevalue(USER_FIXTURES[role])
    kind, data, survivor = FOREIGN_STORAGE[case]
    if kind == "define" and role == OTHER:  # for the other tenant, the foreign volume is tina's
        data = {key: value.replace("otto", "tina") for key, value in data.items()}
        survivor = survivor.replace("otto", "tina")
    if kind == "delete":
        response = client_for(actor).post(f"/domains/embedded/{uuid}/delete/", data)
    else:
        response = client_for(actor).post("/domains/new/", {
            "host": "embedded", "name": "grab", "vcpus": "1", "memory_mib": "256", "accelerator": "test",
            "network": "user", "video_model": "vga", "graphics": "none", "listen": "127.0.0.1", "define": "", **data})
    pool = "images" if survivor == "debian.iso" else "default-pool"
    assert survivor in hypervisor.storagePoolLookupByName(pool).listVolumes()
    names = {dom.name() for dom in hypervisor.listAllDomains(0)}
    assert "grab" not in names
    if kind == "delete" and role == OTHER:
        assert response.status_code == 404  # another tenant's VM does not exist for this user
    if kind == "delete" and "path" not in case:
        assert "tinas-vm" in names  # one refused disk deletes nothing, not even the VM
    assert not Grant.objects.filter(user=actor, domain_name="grab").exists()
