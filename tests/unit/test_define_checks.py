"""The define form's checks as it is typed and on submit, its defaults, and its sections by boot source."""

from __future__ import annotations

import pytest

from domains import virt
from domains.forms import DomainDefineForm
from domains.virt import DefineChoices, HostInUse
from tests.conftest import client_for
from tests.unit.test_define import FORM

HTMX = {"HX-Request": "true"}


def check(user, **fields: str) -> str:
    """The page's check request, as define.html sends it while the name, memory or ports are typed."""
    response = client_for(user).get("/domains/new/", {"check": "1", "host": "embedded", **fields}, headers=HTMX)
    assert response.status_code == 200
    return response.content.decode()


def errors_of(answer: str, field: str) -> str:
    """The out-of-band error box of one field in a check's answer."""
    start = answer.index(f'id="id_{field}-errors"')
    return answer[start:answer.index("</div>", start)]


def test_a_taken_name_is_reported_while_typing_and_an_empty_one_is_not_yet(admin_user, embedded_host):
    answer = check(admin_user, name="test", memory_mib="256", graphics="vnc")
    assert 'hx-swap-oob="innerHTML"' in answer
    assert "A machine named test already exists on this host." in errors_of(answer, "name")
    assert errors_of(check(admin_user, name="", memory_mib="256"), "name").endswith(">")  # no "required" yet
    assert "message error" not in errors_of(check(admin_user, name="fresh", memory_mib="256"), "name")


def test_memory_above_the_hosts_is_reported(admin_user, embedded_host):
    answer = check(admin_user, name="fresh", memory_mib="999999")
    assert "The host has 3072 MiB of memory in all" in errors_of(answer, "memory_mib")


def test_a_display_port_another_machine_holds_is_reported_and_refused(admin_user, embedded_host):
    client = client_for(admin_user)
    assert client.post("/domains/new/", {**FORM, "port": "5950", "define": ""}).status_code == 302
    answer = check(admin_user, name="web2", memory_mib="256", graphics="vnc", port="5950")
    assert "Port 5950 is taken by another machine&#x27;s display on this host" in errors_of(answer, "port")
    assert "message error" not in errors_of(check(admin_user, graphics="vnc", port="5951"), "port")
    # The server checks it again on submit, whatever the page did; the input stays.
    refused = client.post("/domains/new/", {**FORM, "name": "web2", "port": "5950", "define": ""})
    page = refused.content.decode()
    assert refused.status_code == 400
    assert "Port 5950 is taken" in page and 'value="web2"' in page


def test_submit_refuses_memory_above_the_hosts_in_words_with_the_values_kept(admin_user, embedded_host):
    refused = client_for(admin_user).post("/domains/new/", {**FORM, "memory_mib": "4096", "define": ""})
    page = refused.content.decode()
    assert refused.status_code == 400
    assert "The host has 3072 MiB of memory in all: give the machine less." in page
    assert 'value="4096"' in page and 'value="Web server"' in page


def test_a_host_that_stops_answering_before_submit_is_said_on_the_form_with_the_values_kept(
        admin_user, embedded_host, monkeypatch):
    def unreachable(uri: str) -> HostInUse:
        raise virt.HostUnreachable(detail=f"Cannot recv data: {uri} closed the connection")

    monkeypatch.setattr(virt, "host_in_use", unreachable)  # the page was drawn; the submit's check finds it gone
    refused = client_for(admin_user).post("/domains/new/", {**FORM, "define": ""})
    page = refused.content.decode()
    assert refused.status_code == 400
    assert "The host cannot be reached right now." in page
    assert 'value="web1"' in page and 'value="Web server"' in page
    assert "closed the connection" in page  # an admin also reads libvirt's words (errors.error_message)


def form(accelerators: tuple[str, ...], data: dict[str, str] | None = None) -> DomainDefineForm:
    return DomainDefineForm(
        data, choices=DefineChoices(accelerators=accelerators, pools=("default-pool",), volumes=(), networks=()),
        in_use=lambda: HostInUse(names=frozenset(), display_ports=frozenset(), memory_mib=4096), may_boot_kernel=True,
    )


@pytest.mark.parametrize(("offered", "chosen"), [(("kvm", "qemu"), "kvm"), (("qemu",), "qemu")])
def test_the_accelerator_defaults_to_the_best_the_host_offers(offered, chosen):
    shown = str(form(offered)["accelerator"])
    assert f'<option value="{chosen}" selected>' in shown
    assert ("kvm" in shown) == ("kvm" in offered)  # KVM is offered only where the host's capabilities have it


def test_fields_of_another_boot_source_are_ignored_on_submit():
    data = {**FORM, "accelerator": "qemu", "boot_kind": "new-volume", "kernel": "/boot/vmlinuz", "network": "user"}
    bound = form(("qemu",), data)
    assert bound.is_valid(), bound.errors
    assert bound.domain_spec().boot.kernel == ""


def test_the_page_groups_fields_by_what_the_boot_source_and_display_need(admin_user, embedded_host):
    page = client_for(admin_user).get("/domains/new/", {"host": "embedded"}).content.decode()
    assert "<legend>Boot source</legend>" in page and "vmportal/define.js" in page
    volume = page[:page.index('id="id_volume"')]
    assert volume.rindex('data-shown-when="boot_kind" data-shown-for="volume iso"') > volume.rindex("<div")
    tls_port = page[:page.index('id="id_tls_port"')]
    assert tls_port.rindex('data-shown-for="spice"') > tls_port.rindex("<div")
