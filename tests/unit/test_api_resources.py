"""The API's writes do what the pages do, through the same services: define (from the form's fields or
from XML), delete, display, console tickets and migration jobs (202 with the job's URL)."""

from __future__ import annotations

import pytest
from django.test import Client
from websockify.auth_plugins import AuthenticationError

from accounts.models import User
from api import services as api_services
from audit.models import AuditEntry
from consoles import services as consoles
from consoles.models import ConsoleTicket
from consoles.proxy import ConsoleAuthPlugin, ConsoleTokenPlugin
from domains import migration_jobs
from domains.models import Grant, Host, MigrationJob, StoragePool
from domains.virt import migration as vmig
from tests.conftest import TEST_DOMAIN_UUID, client_for
from tests.support.api import (
    api_test_defaults,  # noqa: F401 - a fixture
    bearer,
)
from tests.unit.test_console_tickets import VNC_UUID, console_host, tenant  # noqa: F401 - fixtures
from tests.unit.test_define import FORM, domain_xml

VM = f"/api/v1/domains/embedded/{TEST_DOMAIN_UUID}"
JSON_FORM = {**{key: value for key, value in FORM.items() if key != "guest_agent"}, "guest_agent": True}


def test_define_from_the_forms_fields_answers_201_with_the_vms_url(admin_user: User, embedded_host: Host):
    api = bearer(admin_user)
    made = api.post("/api/v1/domains/", JSON_FORM, content_type="application/json")
    assert made.status_code == 201, made.content
    assert made["Location"] == made.json()["url"] == f"/api/v1/domains/embedded/{made.json()['uuid']}/"
    shown = api.get(made["Location"]).json()
    assert (shown["name"], shown["title"], shown["state"]) == ("web1", "Web server", "shut off")
    assert "<model type='cirrus'" in domain_xml("web1") and "org.qemu.guest_agent.0" in domain_xml("web1")
    entry = AuditEntry.objects.get(action="domain.define")
    assert (entry.result, entry.token_name) == ("succeeded", "tests")


def test_bad_define_input_is_refused_field_by_field_in_the_forms_words(admin_user: User, embedded_host: Host):
    refused = bearer(admin_user).post("/api/v1/domains/", {**JSON_FORM, "memory_mib": 12, "boot_kind": "volume"},
                                      content_type="application/json")
    assert refused.status_code == 400
    errors = refused.json()["errors"]
    assert errors["memory_mib"] == ["Ensure this value is greater than or equal to 64."]
    assert errors["volume"] == ["Needed for this boot source."]


def test_a_tenant_defines_within_its_allowance_owns_the_vm_and_may_delete_it(tenant_user: User, storage: None):
    api = bearer(tenant_user)
    made = api.post("/api/v1/domains/", {**JSON_FORM, "listen": ""}, content_type="application/json")
    assert made.status_code == 201, made.content
    assert Grant.objects.get(user=tenant_user, domain_name="web1").owner
    gone = api.delete(made["Location"], {"disks": ["vda"]}, content_type="application/json")
    assert gone.status_code == 200
    assert gone.json()["detail"] == "web1 and 1 volume deleted."
    assert api.get(made["Location"]).status_code == 404


def test_define_from_xml_is_for_admins_and_libvirts_refusal_is_on_the_xml_field(admin_user: User,
                                                                                operator_user: User,
                                                                                embedded_host: Host):
    xml = "<domain type='test'><name>raw</name><memory>65536</memory><os><type>hvm</type></os></domain>"
    body = {"host": "embedded", "xml": xml}
    assert bearer(operator_user).post("/api/v1/domains/xml/", body, content_type="application/json").status_code == 404
    admin = bearer(admin_user)
    made = admin.post("/api/v1/domains/xml/", body, content_type="application/json")
    assert made.status_code == 201
    broken = admin.post("/api/v1/domains/xml/", {"host": "embedded", "xml": "<domain"},
                        content_type="application/json")
    assert broken.status_code == 400
    assert list(broken.json()["errors"]) == ["xml"]
    # libvirt's own reason, as the page shows it to admins
    assert "Couldn't find end of Start Tag" in broken.json()["errors"]["xml"][0]


def test_the_display_of_a_running_vm_is_refused_in_the_pages_words(admin_user: User, embedded_host: Host):
    refused = bearer(admin_user).put(f"{VM}/display/", {"video_model": "vga", "graphics": "vnc"},
                                     content_type="application/json")
    assert refused.status_code == 400
    assert refused.json()["detail"] == "Graphics and video can be changed only while the machine is shut off."


def test_console_tickets_are_the_ones_the_console_page_gets(tenant: User):  # noqa: F811 - the fixture
    issued = bearer(tenant).post(f"/api/v1/domains/consoles/{VNC_UUID}/console-tickets/")
    assert issued.status_code == 200, issued.content
    body = issued.json()
    assert body["kind"] == "vnc" and len(body["tickets"]) == 1 and 0 < body["expires_in"] < 60
    ticket = ConsoleTicket.objects.get()
    assert ticket.user == tenant and ticket.token_hash != body["tickets"][0]
    assert AuditEntry.objects.get(action="console.ticket").token_name == "tests"


def _open_with(token: str, headers: dict[str, str]):
    """What the console proxy does for one websocket upgrade (websockify's two plugin calls)."""
    tickets = ConsoleTokenPlugin()
    auth = ConsoleAuthPlugin(tickets)
    target = tickets.lookup(token)
    auth.authenticate(headers=headers, target_host=target[0], target_port=target[1])
    assert auth.console is not None
    return auth.console


def _token_client(user: User, name: str = "console client") -> tuple[Client, str]:
    _token, text = api_services.token_create(actor=user, name=name)
    return Client(headers={"Authorization": f"Bearer {text}"}), f"Bearer {text}"


def test_a_token_clients_ticket_opens_with_that_token_alone_and_closes_when_it_is_revoked(
        tenant: User):  # noqa: F811 - the fixture
    api, authorization = _token_client(tenant)
    issued = api.post(f"/api/v1/domains/consoles/{VNC_UUID}/console-tickets/").json()
    assert issued["origin"] == "http://testserver"
    [ticket] = issued["tickets"]
    console = _open_with(ticket, {"Origin": issued["origin"], "Authorization": authorization})
    assert console.user == tenant and console.endpoint.port == 5907
    assert consoles.console_recheck(console) is None
    token_id = ConsoleTicket.objects.get().api_token_id
    assert token_id is not None
    api_services.token_revoke(actor=tenant, token_id=token_id)
    assert consoles.console_recheck(console) == "API token revoked or expired"


@pytest.mark.parametrize("sent", ["nothing", "another token", "the users session"])
def test_a_token_clients_ticket_opens_with_no_other_credential(tenant: User, sent: str):  # noqa: F811
    api, _authorization = _token_client(tenant)
    [ticket] = api.post(f"/api/v1/domains/consoles/{VNC_UUID}/console-tickets/").json()["tickets"]
    headers = {"Origin": "http://testserver"}
    if sent == "another token":
        headers["Authorization"] = _token_client(tenant, "another")[1]
    elif sent == "the users session":
        headers["Cookie"] = f"sessionid={client_for(tenant).cookies['sessionid'].value}"
    with pytest.raises(AuthenticationError):
        _open_with(ticket, headers)
    refusal = AuditEntry.objects.get(action="console.open")
    assert refusal.result == AuditEntry.Result.DENIED
    assert "not the usable API token the ticket was issued to" in refusal.message


def test_a_pages_ticket_does_not_open_with_the_users_token(tenant: User):  # noqa: F811 - the fixture
    page = client_for(tenant)
    [ticket] = page.post(f"/consoles/consoles/{VNC_UUID}/tickets/").json()["tickets"]
    with pytest.raises(AuthenticationError):
        _open_with(ticket, {"Origin": "http://testserver", "Authorization": _token_client(tenant)[1]})
    assert "no session of the ticket's user" in AuditEntry.objects.get(action="console.open").message


@pytest.fixture
def startable(monkeypatch: pytest.MonkeyPatch, embedded_host: Host, xml_host) -> Host:
    """A second host that the pre-checks pass (test:///default cannot migrate: the lab test moves VMs),
    and no runner: the job stays queued for the test to read and cancel."""
    monkeypatch.setattr(vmig, "precheck", lambda *args, **kwargs: [])
    monkeypatch.setattr(migration_jobs, "start", lambda job_id: None)
    return xml_host("other", [])


@pytest.mark.django_db(transaction=True)  # the job is recorded on commit, as for the page
def test_a_migration_starts_at_once_with_its_job_url_and_can_be_cancelled(admin_user: User, startable: Host):
    api = bearer(admin_user)
    started = api.post(f"{VM}/migrations/", {"destination": "other", "persist_dest": True},
                       content_type="application/json")
    assert started.status_code == 202, started.content
    job = MigrationJob.objects.get()
    assert started["Location"] == started.json()["url"] == f"/api/v1/migrations/{job.pk}/"
    followed = api.get(started["Location"]).json()
    assert (followed["state"], followed["source"], followed["destination"], followed["mode"]) == (
        "queued", "embedded", "other", "live")
    cancelled = api.post(f"/api/v1/migrations/{job.pk}/cancel/")
    assert cancelled.status_code == 200, cancelled.content
    assert api.get(started["Location"]).json()["state"] == "cancelled"


def test_a_migration_to_an_unregistered_host_is_refused_in_the_pages_words(admin_user: User, embedded_host: Host):
    refused = bearer(admin_user).post(f"{VM}/migrations/", {"destination": "qemu+tcp://10.0.0.9/system"},
                                      content_type="application/json")
    assert refused.status_code == 400
    assert refused.json()["detail"] == "Pick the destination from the registered hosts other than the current one."
    assert not MigrationJob.objects.exists()


def test_the_list_is_the_pages_json_with_each_rows_url(tenant_user: User, tenant_grant: Grant):
    page = client_for(tenant_user).get("/domains/", {"all": "", "sort": "-memory", "format": "json"}).json()
    listed = bearer(tenant_user).get("/api/v1/domains/", {"all": "", "sort": "-memory"}).json()
    assert [row.pop("url") for row in listed["domains"]] == [f"{VM}/"]
    assert listed == page


def test_an_allowance_made_through_the_api_lets_its_tenant_define_and_bad_ones_are_refused_in_words(
        admin_user: User, tenant_user: User, embedded_host: Host, hypervisor):
    StoragePool.objects.create(host=embedded_host, name="default-pool")
    admin = bearer(admin_user)
    made = admin.post("/api/v1/allowances/", {"user": tenant_user.username, "hosts": ["embedded"], "max_vms": 1,
                                              "pools": ["embedded/default-pool"], "max_storage_gib": 10},
                      content_type="application/json")
    assert made.status_code == 201, made.content
    assert made.json()["hosts"] == ["embedded"] and made.json()["max_memory_mib"] == 2048  # the pages' default
    tenants_api = bearer(tenant_user)
    assert tenants_api.post("/api/v1/domains/", {**JSON_FORM, "listen": ""}, content_type="application/json"
                       ).status_code == 201
    second = tenants_api.post("/api/v1/domains/", {**JSON_FORM, "name": "web2", "listen": ""},
                         content_type="application/json")
    assert (second.status_code, second.json()["detail"]) == (400, "You already have 1 of your 1 machines.")
    both = admin.put(f"/api/v1/allowances/{made.json()['id']}/", {"user": tenant_user.username, "group": "nobody"},
                     content_type="application/json")
    assert (both.status_code, both.json()["errors"]) == (400, {"group": ["There is no group nobody."]})
    neither = admin.post("/api/v1/allowances/", {"pools": []}, content_type="application/json")
    assert neither.json()["errors"]["user"] == ["Choose a user or a group."]
    unknown_pool = admin.post("/api/v1/allowances/", {"user": tenant_user.username, "pools": ["embedded/nope"]},
                              content_type="application/json")
    assert unknown_pool.json()["errors"] == {"pools": ["There is no registered pool embedded/nope (HOST/POOL)."]}
    assert admin.delete(f"/api/v1/allowances/{made.json()['id']}/").json()["detail"] == "Allowance removed."
    # Refused before the service (a name that names nothing) leaves no row, as a grant's; the service's own do.
    assert list(AuditEntry.objects.filter(action__startswith="allowance.", token_name="tests").order_by("pk")
                .values_list("action", "result")) == [("allowance.create", "succeeded"),
                                                      ("allowance.create", "failed"), ("allowance.delete", "succeeded")]
