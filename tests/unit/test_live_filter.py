"""record_matches, the live list's filter, against libvirt's own listAllDomains filtering.

The live list decides from one pushed record whether a VM belongs in a filtered view; it must say
what `virsh list <options>` says. The inventory (tests/fixtures/inventory.xml) holds a domain in
every state, persistent and transient, with and without snapshots and managed save images.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import pytest

from domains import virt
from domains.virt.inventory import list_flags, record_matches

INVENTORY = Path(__file__).resolve().parents[1] / "fixtures" / "inventory.xml"
URI = f"test://{INVENTORY}"
AUTOSTARTED = ("web-1", "db-paused", "crashed", "off-saved-snap", "off-auto")
OPTION_SETS: list[tuple[str, ...]] = [
    (), *((option,) for option in virt.LIST_OPTIONS), *combinations(virt.LIST_OPTIONS, 2)
]


@pytest.fixture(scope="module")
def inventory():
    """A connection to the inventory with some VMs autostarted, and every record read from it."""
    virt.pool.close_all()
    conn = virt.pool.get(URI).conn
    for name in AUTOSTARTED:
        conn.lookupByName(name).setAutostart(1)
    yield conn, virt.list_domains(URI, ("all",))
    virt.pool.close_all()


@pytest.fixture(autouse=True)
def fresh_hypervisor_connections():
    """Overrides the per-test reset of tests/conftest.py: one inventory serves the whole module."""
    yield


def test_the_inventory_has_every_kind_of_domain(inventory) -> None:
    _conn, records = inventory
    assert len(records) == 16
    assert {record.state for record in records} == set(virt.DomainState)
    assert any(not record.persistent for record in records)
    assert any(record.managed_save for record in records)
    assert any(record.snapshots for record in records)
    assert any(record.autostart for record in records)


@pytest.mark.parametrize("options", OPTION_SETS, ids=lambda options: "+".join(options) or "no-options")
def test_record_matches_agrees_with_list_all_domains(inventory, options: tuple[str, ...]) -> None:
    conn, records = inventory
    listed = {dom.name() for dom in conn.listAllDomains(list_flags(options))}
    matched = {record.name for record in records if record_matches(record, options)}
    assert matched == listed


def test_unknown_options_are_refused(inventory) -> None:
    _conn, records = inventory
    with pytest.raises(ValueError, match="unknown list options"):
        record_matches(records[0], ("running",))
