"""The host watcher on test:///default: what libvirt's events make it report, and in what order.

test:///default keeps one shared state per process while any connection to it is open, so the
changes made here through the dashboard's pooled connection reach the watcher's own connection
as libvirt events, as changes made by virsh on a real host would.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from domains import virt
from domains.virt import DomainChanged, DomainRemoved, HostLost, HostSynced, HostWatcher
from tests.conftest import TEST_DOMAIN_UUID

URI = "test:///default"
NEW_UUID = "8ac2f5a0-5e6f-4c41-9d3b-2b1f0d3c4e5f"
NEW_DOMAIN = (
    f"<domain type='test'><name>fresh</name><uuid>{NEW_UUID}</uuid><memory>65536</memory>"
    "<vcpu>1</vcpu><os><type>hvm</type></os></domain>"
)


class Events:
    def __init__(self) -> None:
        self.queue: queue.Queue[virt.HostEvent] = queue.Queue()
        self.seen: list[virt.HostEvent] = []

    def __call__(self, event: virt.HostEvent) -> None:
        self.queue.put(event)

    def wait_for(self, predicate: Callable[[virt.HostEvent], bool], timeout: float = 5.0) -> virt.HostEvent:
        deadline = time.monotonic() + timeout
        while True:
            try:
                event = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no such event within {timeout}s; got {self.seen}") from None
            self.seen.append(event)
            if predicate(event):
                return event


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
def watcher(events: Events) -> Iterator[HostWatcher]:
    conn = virt.pool.get(URI).conn  # holds the shared state for the watcher's and the test's changes
    watcher = HostWatcher(URI, events, name="embedded", resync_seconds=3600).start()
    yield watcher
    watcher.stop()
    for dom in conn.listAllDomains(0):
        if dom.UUIDString() == NEW_UUID:
            if dom.isActive():
                dom.destroy()
            if dom.isPersistent():
                dom.undefine()


def is_change(uuid: str, check: Callable[[virt.DomainRecord], bool] = lambda record: True):
    return lambda event: isinstance(event, DomainChanged) and event.record.uuid == uuid and check(event.record)


def test_first_a_full_listing_then_each_change_with_a_higher_sequence(events: Events, watcher: HostWatcher) -> None:
    synced = events.wait_for(lambda event: isinstance(event, HostSynced))
    assert isinstance(synced, HostSynced)
    assert [record.name for record in synced.records] == ["test"]
    assert synced.records[0].state is virt.DomainState.RUNNING

    virt.run_action(URI, TEST_DOMAIN_UUID, virt.Action.PAUSE)
    paused = events.wait_for(is_change(TEST_DOMAIN_UUID))
    assert paused.record.state is virt.DomainState.PAUSED  # type: ignore[union-attr]
    assert paused.record.reason == "user"  # type: ignore[union-attr]
    assert paused.seq > synced.seq

    virt.run_action(URI, TEST_DOMAIN_UUID, virt.Action.RESUME)
    resumed = events.wait_for(is_change(TEST_DOMAIN_UUID))
    assert resumed.record.state is virt.DomainState.RUNNING  # type: ignore[union-attr]
    assert resumed.seq > paused.seq
    assert watcher.reachable is True


def test_definitions_and_undefinitions_come_as_changes_and_removals(events: Events, watcher: HostWatcher) -> None:
    events.wait_for(lambda event: isinstance(event, HostSynced))
    conn = virt.pool.get(URI).conn
    conn.defineXML(NEW_DOMAIN)
    defined = events.wait_for(is_change(NEW_UUID))
    assert defined.record.name == "fresh"  # type: ignore[union-attr]
    assert defined.record.state is virt.DomainState.SHUTOFF  # type: ignore[union-attr]

    conn.lookupByUUIDString(NEW_UUID).undefine()
    removed = events.wait_for(lambda event: isinstance(event, DomainRemoved))
    assert isinstance(removed, DomainRemoved)
    assert removed.uuid == NEW_UUID
    assert removed.last_seen is not None and removed.last_seen.name == "fresh"


def test_a_change_without_an_event_shows_after_a_nudge(events: Events, watcher: HostWatcher) -> None:
    events.wait_for(lambda event: isinstance(event, HostSynced))
    conn = virt.pool.get(URI).conn
    conn.defineXML(NEW_DOMAIN)
    events.wait_for(is_change(NEW_UUID))
    virt.run_action(URI, NEW_UUID, virt.Action.AUTOSTART_ON)  # libvirt has no event for autostart
    watcher.nudge(NEW_UUID)
    changed = events.wait_for(is_change(NEW_UUID))
    assert changed.record.autostart  # type: ignore[union-attr]


def test_a_periodic_resync_reports_what_changed_without_an_event(events: Events) -> None:
    conn = virt.pool.get(URI).conn
    conn.defineXML(NEW_DOMAIN)
    watcher = HostWatcher(URI, events, name="embedded", resync_seconds=0.3).start()
    try:
        events.wait_for(lambda event: isinstance(event, HostSynced))
        conn.lookupByUUIDString(NEW_UUID).setAutostart(1)
        changed = events.wait_for(is_change(NEW_UUID, lambda record: record.autostart), timeout=3)
        assert changed.record.name == "fresh"  # type: ignore[union-attr]
    finally:
        watcher.stop()
        conn.lookupByUUIDString(NEW_UUID).undefine()


def test_a_host_that_refuses_is_lost_at_once_and_retried(events: Events, closed_loopback_uri: str) -> None:
    watcher = HostWatcher(closed_loopback_uri, events, name="gone", backoff=(0.05, 0.1)).start()
    try:
        started = time.monotonic()
        lost = events.wait_for(lambda event: isinstance(event, HostLost))
        assert time.monotonic() - started < 2
        assert isinstance(lost, HostLost)
        assert lost.message == "The host cannot be reached right now."
        assert "127.0.0.1" not in lost.message
        time.sleep(0.5)  # several failed reconnects later, still one HostLost
        assert [event for event in events.seen if isinstance(event, HostLost)] == [lost]
        assert events.queue.empty()
        assert watcher.reachable is False
    finally:
        watcher.stop()


def test_an_inventory_file_host_is_watched_on_the_dashboards_own_copy(events: Events, xml_host) -> None:
    """Every connection to test:///<file> has its own copy: the watcher must see the one actions change."""
    domain_uuid = "44444444-2222-4333-8444-555555555555"
    host = xml_host("xmlhost", [{"name": "alpha", "uuid": domain_uuid}])
    watcher = HostWatcher(host.uri, events, name=host.name, resync_seconds=3600).start()
    try:
        events.wait_for(lambda event: isinstance(event, HostSynced))
        virt.run_action(host.uri, domain_uuid, virt.Action.PAUSE)
        paused = events.wait_for(is_change(domain_uuid))
        assert paused.record.state is virt.DomainState.PAUSED  # type: ignore[union-attr]
    finally:
        watcher.stop()
    assert virt.get_domain(host.uri, domain_uuid).state is virt.DomainState.PAUSED  # the pool's copy, still open


class FollowedGuests:
    """Stands in for the watcher's AddressReader: records which guests' agents it is told to ask."""

    def __init__(self) -> None:
        self.followed: list[str] = []

    def follow(self, uuid: str, *, unconfirmed: bool = False) -> None:
        self.followed.append(uuid)

    def forget(self, uuid: str) -> None:
        self.followed = [followed for followed in self.followed if followed != uuid]


def test_news_a_listing_cannot_tell_survives_a_resync_in_the_same_batch(events: Events) -> None:
    """A resync queued with "agent connected" and "device added" once dropped both: the guest's addresses
    were never read and its page kept showing the old devices."""
    from domains.virt.events import _Reread, _Resync

    virt.pool.get(URI)
    watcher = HostWatcher(URI, events, name="embedded", resync_seconds=3600)
    followed = FollowedGuests()
    watcher._addresses = followed  # type: ignore[assignment]
    watcher._connect()
    try:
        watcher._resync(full=False)
        events.wait_for(lambda event: isinstance(event, HostSynced))
        followed.followed.clear()
        agent_connected = _Reread(TEST_DOMAIN_UUID, watcher._seq(), True, True)
        watcher._handle([agent_connected, _Resync()])
        assert followed.followed == [TEST_DOMAIN_UUID]
        refreshed = events.wait_for(is_change(TEST_DOMAIN_UUID))
        assert isinstance(refreshed, DomainChanged) and refreshed.details
    finally:
        watcher._disconnect()


def test_periodic_listings_reuse_what_events_keep_current(events: Events, monkeypatch: pytest.MonkeyPatch) -> None:
    """Over a slow link each title read is a round trip: a periodic listing reuses the titles (and an inactive
    domain's vCPUs and memory) the watcher knows, and re-reads them whole every FULL_READ_SECONDS."""
    from domains.virt import events as watcher_module
    from domains.virt import inventory

    virt.pool.get(URI)
    watcher = HostWatcher(URI, events, name="embedded", resync_seconds=3600)
    reads: list[str] = []
    for asking in ("_title", "_defined"):  # the test driver's statistics lack vCPUs: its definition is read
        real = getattr(inventory, asking)

        def counted(dom: Any, real: Callable[..., object] = real, **kwargs: bool) -> object:
            reads.append(dom.name())
            return real(dom)

        monkeypatch.setattr(inventory, asking, counted)
    watcher._connect()
    try:
        watcher._resync(full=True)
        assert reads == ["test"]
        reads.clear()
        watcher._resync(full=False)
        assert reads == []  # known: not asked again
        monkeypatch.setattr(watcher_module, "FULL_READ_SECONDS", 0.0)
        watcher._resync(full=False)
        assert reads == ["test"]
    finally:
        watcher._disconnect()
