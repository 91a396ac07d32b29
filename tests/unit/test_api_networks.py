"""A host's networks through the API, on test:///default's "default" NAT network: listed with its leases' state,
acted on by operators, NAT networks defined by admins with bad input refused in the define form's words."""

from __future__ import annotations

import libvirt

from accounts.models import User
from audit.models import AuditEntry
from tests.support.api import (
    api_test_defaults,  # noqa: F401 - a fixture
    bearer,
)
from tests.unit.test_networks import hypervisor  # noqa: F401 - the fixture

NETWORKS = "/api/v1/hosts/embedded/networks/"


def test_the_list_and_a_network_with_why_its_leases_are_unknown(hypervisor: libvirt.virConnect,  # noqa: F811
                                                                 operator_user: User, tenant_user: User):
    api = bearer(operator_user)
    [network] = api.get(NETWORKS).json()["networks"]
    assert (network["name"], network["forward_mode"], network["ipv4"], network["url"]) == (
        "default", "nat", "192.168.122.1/24", NETWORKS + "default/")
    shown = api.get(network["url"]).json()
    assert shown["leases"] == []
    assert shown["leases_error"].startswith("This host's hypervisor does not support that action.")
    assert bearer(tenant_user).get(NETWORKS).status_code == 404


def test_an_operator_stops_and_starts_a_network_and_libvirts_reason_is_said(hypervisor: libvirt.virConnect,  # noqa: F811
                                                                            operator_user: User):
    api = bearer(operator_user)
    assert api.post(NETWORKS + "default/actions/stop/").json()["detail"] == "Network default stopped."
    assert not hypervisor.networkLookupByName("default").isActive()
    assert api.post(NETWORKS + "default/actions/start/").status_code == 200
    again = api.post(NETWORKS + "default/actions/start/")
    assert (again.status_code, again.json()["detail"]) == (409, "Network 'default' is already running.")
    assert api.post(NETWORKS + "default/actions/explode/").json()["detail"] == "Unknown network action."
    assert [entry.token_name for entry in AuditEntry.objects.filter(action__startswith="network.")] == ["tests"] * 3


def test_an_admin_defines_a_nat_network_started_unless_told_otherwise(hypervisor: libvirt.virConnect,  # noqa: F811
                                                                      admin_user: User, operator_user: User):
    api = bearer(admin_user)
    made = api.post(NETWORKS, {"name": "lab-nat", "subnet": "192.168.150.0/24"}, content_type="application/json")
    assert made.status_code == 201, made.content
    assert made["Location"] == NETWORKS + "lab-nat/"
    assert made.json()["dhcp_ranges"] == [{"start": "192.168.150.2", "end": "192.168.150.254"}]
    defined = hypervisor.networkLookupByName("lab-nat")
    assert defined.isActive() and defined.autostart()
    stopped = api.post(NETWORKS, {"name": "small", "subnet": "10.77.0.0/28", "start": False, "autostart": False},
                       content_type="application/json")
    assert stopped.status_code == 201 and not hypervisor.networkLookupByName("small").isActive()
    overlap = api.post(NETWORKS, {"name": "wide", "subnet": "192.168.0.0/16"}, content_type="application/json")
    assert overlap.status_code == 400
    assert "192.168.0.0/16 overlaps 192.168.122.0/24 of network default." in overlap.json()["errors"]["subnet"]
    refused = bearer(operator_user).post(NETWORKS, {"name": "ops", "subnet": "10.9.0.0/24"},
                                         content_type="application/json")
    assert refused.status_code == 404
    assert "ops" not in hypervisor.listNetworks() + hypervisor.listDefinedNetworks()
